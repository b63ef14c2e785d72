"""Learning-curve metrics: AUBC, labels to reach a target, mean curves over seeds, speed-up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al_loop.curves import aubc, labels_to_target, mean_curve, speed_up

# -- aubc -------------------------------------------------------------------------------------------


def test_aubc_is_trapezoid_over_span():
    # (0+1)/2*10 + (1+1)/2*10 = 15, over a span of 20
    assert aubc([0, 10, 20], [0, 1, 1]) == pytest.approx(0.75)


def test_aubc_uneven_steps():
    # (0.5+0.7)/2*10 + (0.7+0.9)/2*30 = 6 + 24 = 30, over a span of 40
    assert aubc([10, 20, 50], [0.5, 0.7, 0.9]) == pytest.approx(0.75)
    # a curve starting late is normalised by its own span, not by its last label count
    assert aubc([100, 200], [0.2, 0.4]) == pytest.approx(0.3)


def test_aubc_of_constant_curve_is_the_constant():
    assert aubc([5, 17, 40, 41], [0.63, 0.63, 0.63, 0.63]) == pytest.approx(0.63)


def test_aubc_single_point_is_its_accuracy():
    assert aubc([25], [0.42]) == pytest.approx(0.42)
    assert isinstance(aubc(np.array([25]), np.array([0.42])), float)


@pytest.mark.parametrize("labels", [[0, 10, 10], [0, 20, 10], [30, 20, 10]])
def test_aubc_rejects_non_increasing_labels(labels):
    with pytest.raises(ValueError, match="strictly increasing"):
        aubc(labels, [0.1, 0.2, 0.3])


@pytest.mark.parametrize(("labels", "accuracy"), [([0, 10, 20], [0.1, 0.2]), ([0, 10], [0.1, 0.2, 0.3]), ([], [])])
def test_aubc_rejects_length_mismatch_or_empty(labels, accuracy):
    with pytest.raises(ValueError, match="same length"):
        aubc(labels, accuracy)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_aubc_lies_between_min_and_max_accuracy(data):
    labels = sorted(data.draw(st.sets(st.integers(0, 10_000), min_size=1, max_size=30)))
    accuracy = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(labels), max_size=len(labels)))
    value = aubc(labels, accuracy)
    assert min(accuracy) - 1e-12 <= value <= max(accuracy) + 1e-12


# -- labels_to_target -------------------------------------------------------------------------------

LABELS = [10, 20, 30, 40]
ACCURACY = [0.5, 0.8, 0.7, 0.9]


@pytest.mark.parametrize(("target", "expected"), [(0.4, 10.0), (0.75, 20.0), (0.8, 20.0), (0.85, 40.0),
                                                  (0.9, 40.0)])
def test_labels_to_target_is_first_crossing(target, expected):
    assert labels_to_target(LABELS, ACCURACY, target) == expected


def test_labels_to_target_none_when_never_reached():
    assert labels_to_target(LABELS, ACCURACY, 0.95) is None
    assert labels_to_target([], [], 0.5) is None


# -- mean_curve -------------------------------------------------------------------------------------


def test_mean_curve_mean_and_std_over_common_steps():
    curves = [
        (np.array([10, 20, 30]), np.array([0.5, 0.6, 0.7])),
        (np.array([10, 30, 40]), np.array([0.7, 0.8, 0.9])),
    ]
    steps, mean, std = mean_curve(curves)
    np.testing.assert_array_equal(steps, [10.0, 30.0])
    np.testing.assert_allclose(mean, [0.6, 0.75])
    np.testing.assert_allclose(std, [0.1, 0.05])  # population std over seeds


def test_mean_curve_three_seeds_unsorted_steps():
    curves = [
        (np.array([30, 10, 20]), np.array([0.9, 0.3, 0.6])),
        (np.array([10, 20, 30]), np.array([0.5, 0.6, 0.6])),
        (np.array([20, 10, 30]), np.array([0.6, 0.4, 0.9])),
    ]
    steps, mean, std = mean_curve(curves)
    np.testing.assert_array_equal(steps, [10.0, 20.0, 30.0])
    np.testing.assert_allclose(mean, [0.4, 0.6, 0.8])
    np.testing.assert_allclose(std, [np.sqrt(2 / 300), 0.0, np.sqrt(0.02)])


def test_mean_curve_single_curve_has_zero_std():
    steps, mean, std = mean_curve([(np.array([5, 15]), np.array([0.2, 0.4]))])
    np.testing.assert_array_equal(steps, [5.0, 15.0])
    np.testing.assert_allclose(mean, [0.2, 0.4])
    np.testing.assert_allclose(std, [0.0, 0.0])


def test_mean_curve_no_common_steps_is_empty():
    steps, mean, std = mean_curve([(np.array([1, 2]), np.array([0.1, 0.2])),
                                   (np.array([3, 4]), np.array([0.3, 0.4]))])
    assert steps.size == 0 and mean.size == 0 and std.size == 0


def test_mean_curve_rejects_no_curves():
    with pytest.raises(ValueError, match="no curves"):
        mean_curve([])


# -- speed_up ---------------------------------------------------------------------------------------


def test_speed_up_is_ratio_of_labels():
    assert speed_up(100, 25) == pytest.approx(4.0)
    assert speed_up(50, 100) == pytest.approx(0.5)


@pytest.mark.parametrize(("random_labels", "strategy_labels"), [(None, 20), (100, None), (None, None), (100, 0),
                                                                (100, -5)])
def test_speed_up_none_when_unknown(random_labels, strategy_labels):
    assert speed_up(random_labels, strategy_labels) is None
