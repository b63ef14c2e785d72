"""The simulated annotator: truth without noise, a wrong class at the noise rate, deterministic answers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from al_loop.annotators.base import TaskRequest
from al_loop.annotators.simulated import SimulatedAnnotator
from al_loop.errors import DataError

CLASSES = ["ant", "bee", "cat"]
N = 2000


@pytest.fixture(scope="module")
def truth() -> dict[str, str]:
    rng = np.random.default_rng(2024)
    return {f"ex-{i}": CLASSES[c] for i, c in enumerate(rng.integers(len(CLASSES), size=N))}


def test_no_noise_answers_the_truth(truth):
    annotator = SimulatedAnnotator(truth, CLASSES, noise=0.0, seed=3)
    answers = {e: annotator.answer(e) for e in truth}
    assert answers == truth


def test_noise_rate_is_respected_and_wrong_answers_are_other_classes(truth):
    annotator = SimulatedAnnotator(truth, CLASSES, noise=0.3, seed=11)
    answers = {e: annotator.answer(e) for e in truth}
    wrong = [e for e in truth if answers[e] != truth[e]]
    assert 0.25 <= len(wrong) / N <= 0.35
    assert set(answers.values()) <= set(CLASSES)
    # a wrong answer is spread over the other classes, not always the same one
    wrong_pairs = Counter((truth[e], answers[e]) for e in wrong)
    assert len(wrong_pairs) == 6  # every (truth, other class) pair occurs


def test_full_noise_never_answers_the_truth(truth):
    # with noise 1 every answer takes the "wrong" branch: none may equal the truth
    annotator = SimulatedAnnotator(truth, CLASSES, noise=1.0, seed=5)
    answers = {e: annotator.answer(e) for e in truth}
    assert all(answers[e] != truth[e] for e in truth)
    assert set(answers.values()) <= set(CLASSES)
    # the wrong class is drawn uniformly among the two others
    for cls in CLASSES:
        others = Counter(answers[e] for e in truth if truth[e] == cls)
        assert set(others) == set(CLASSES) - {cls}
        low, high = sorted(others.values())
        assert low / (low + high) > 0.4


def test_two_classes_wrong_answer_is_the_other_class():
    truth = {f"e{i}": "yes" if i % 2 else "no" for i in range(200)}
    annotator = SimulatedAnnotator(truth, ["no", "yes"], noise=0.3, seed=0)
    flips = 0
    for e, label in truth.items():
        answer = annotator.answer(e)
        assert answer in {"no", "yes"}
        flips += answer != label
    assert 30 <= flips <= 90


def test_answers_are_deterministic_regardless_of_call_order(truth):
    ids = list(truth)
    forward = SimulatedAnnotator(truth, CLASSES, noise=0.3, seed=7)
    first = {e: forward.answer(e) for e in ids}
    shuffled = list(np.random.default_rng(1).permutation(ids))
    backward = SimulatedAnnotator(truth, CLASSES, noise=0.3, seed=7)
    second = {e: backward.answer(e) for e in reversed(ids)}
    third = {e: backward.answer(e) for e in shuffled}
    assert first == second == third
    # the same through pull, whatever the order of the pending batch
    pulled = backward.pull(dict.fromkeys(shuffled[:300]))
    assert {a.example_id: a.label for a in pulled.annotations} == {e: first[e] for e in shuffled[:300]}


def test_answers_depend_on_the_seed(truth):
    a = SimulatedAnnotator(truth, CLASSES, noise=0.3, seed=7)
    b = SimulatedAnnotator(truth, CLASSES, noise=0.3, seed=8)
    differing = sum(a.answer(e) != b.answer(e) for e in truth)
    assert differing > 0.2 * N


def test_missing_truth_raises_data_error():
    with pytest.raises(DataError, match="2 row"):
        SimulatedAnnotator({"a": "ant", "b": None, "c": None}, CLASSES)


def test_push_and_pull():
    annotator = SimulatedAnnotator({"a": "ant", "b": "bee"}, CLASSES)
    tasks = [TaskRequest(example_id="a", round=0, rank=0, data={}),
             TaskRequest(example_id="b", round=0, rank=1, data={})]
    assert annotator.push(tasks) == {"a": "sim-a", "b": "sim-b"}
    assert annotator.push(tasks) == {"a": "sim-a", "b": "sim-b"}  # idempotent
    with pytest.raises(KeyError, match="zzz"):
        annotator.push([TaskRequest(example_id="zzz", round=0, rank=0, data={})])
    result = annotator.pull({"b": "sim-b", "a": "sim-a"})
    assert [(x.example_id, x.label, x.annotator) for x in result.annotations] == [("b", "bee", "simulated"),
                                                                                   ("a", "ant", "simulated")]
    assert result.skipped == [] and result.removed == []
    assert annotator.pull({}).annotations == []
