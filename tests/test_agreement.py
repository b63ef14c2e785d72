"""Agreement statistics against published worked examples, and on simulated crowds with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al_loop.agreement import agreement_report, alpha, as_metrics, cohen_pairs, fleiss, metric_names
from al_loop.consensus import dawid_skene, majority


def _long(rows: dict[str, list[object]]) -> pd.DataFrame:
    """Annotators' answers given as one row of values per annotator (None: no answer) -> long format."""
    return pd.DataFrame([{"example_id": f"u{unit}", "annotator": who, "label": str(value)}
                         for who, values in rows.items() for unit, value in enumerate(values) if value is not None])


def test_cohen_kappa_matches_the_textbook_example() -> None:
    # Wikipedia, "Cohen's kappa", worked example: 50 grant proposals read by A and B;
    # yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    pairs = cohen_pairs(_long({"A": a, "B": b}), ["yes", "no"])
    assert pairs == {("A", "B"): pytest.approx(0.4)}


def test_fleiss_kappa_matches_the_published_example() -> None:
    # Fleiss (1971) as worked in Wikipedia, "Fleiss' kappa": 10 subjects, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    rows = [{"example_id": f"s{i}", "annotator": f"r{r}", "label": str(category + 1)}
            for i, counts in enumerate(table)
            for r, category in enumerate(np.repeat(np.arange(5), counts))]
    assert fleiss(pd.DataFrame(rows), ["1", "2", "3", "4", "5"]) == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_matches_the_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C: 4 observers, 12 units,
    # nominal values with missing data -> alpha = 0.743
    answers = _long({
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    })
    assert alpha(answers, ["1", "2", "3", "4", "5"]) == pytest.approx(0.743, abs=1e-3)


def test_statistics_that_cannot_be_computed_are_left_out() -> None:
    single = _long({"A": ["x", "y", "x"]})  # nobody overlaps
    report = agreement_report(single, {"u0": "x", "u1": "y", "u2": "x"}, ["x", "y"])
    assert "krippendorff_alpha" not in report.overall and "fleiss_kappa" not in report.overall
    assert report.pairs == {} and report.flagged == []
    assert report.overall["examples"] == 3 and report.overall["overlapped_examples"] == 0
    unanimous = _long({"A": ["x"] * 6, "B": ["x"] * 6})  # one value only: chance agreement is total
    assert "krippendorff_alpha" not in agreement_report(unanimous, {}, ["x", "y"]).overall


def _crowd(accuracies: list[float], n: int, classes: int, seed: int, per_item: int | None = None
           ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Answers of simulated annotators: each is right with its accuracy, else a uniformly random wrong class."""
    rng = np.random.default_rng(seed)
    truth = {f"e{i}": str(rng.integers(classes)) for i in range(n)}
    rows = []
    for example, true in truth.items():
        who = range(len(accuracies)) if per_item is None else rng.choice(len(accuracies), per_item, replace=False)
        for a in who:
            if rng.random() < accuracies[a]:
                label = true
            else:
                label = str(rng.choice([c for c in range(classes) if str(c) != true]))
            rows.append({"example_id": example, "annotator": f"ann{a}", "label": label})
    return pd.DataFrame(rows), truth


def test_agreement_flags_the_random_annotator_and_consensus_beats_every_annotator() -> None:
    classes = [str(c) for c in range(4)]
    answers, truth = _crowd([0.85, 0.8, 0.75, 0.25], n=400, classes=4, seed=1)  # ann3 answers at random
    votes = {e: majority(list(g["label"])).label for e, g in answers.groupby("example_id")}
    skene = dawid_skene(answers, classes)["label"].to_dict()
    for consensus in (votes, skene):
        report = agreement_report(answers, consensus, classes, truth=truth, flag_below=0.5)
        assert report.flagged == ["ann3"]
        best_single = max(s["accuracy"] for s in report.annotators.values())
        assert report.overall["consensus_accuracy"] > best_single
        ranked = sorted(report.annotators, key=lambda a: report.annotators[a]["agreement"])
        assert ranked[0] == "ann3"
        worst_pairs = min(report.pairs, key=report.pairs.get)
        assert "ann3" in worst_pairs
    metrics = as_metrics(agreement_report(answers, skene, classes, truth=truth), "agreement/overall")
    assert metrics["annotator/ann3/flagged"] == 1.0 and metrics["annotator/ann0/flagged"] == 0.0
    assert 0 < metrics["agreement/overall/krippendorff_alpha"] < 1


def test_dawid_skene_outvotes_an_adversarial_annotator_that_majority_follows() -> None:
    # two careful annotators and an adversary who is always wrong: with 3 votes, majority is wrong whenever
    # one careful annotator errs; Dawid-Skene learns the adversary's answers carry no weight for the truth
    classes = [str(c) for c in range(3)]
    answers, truth = _crowd([0.8, 0.75, 0.0], n=600, classes=3, seed=2)
    votes = {e: majority(list(g["label"])).label for e, g in answers.groupby("example_id")}
    skene = dawid_skene(answers, classes)["label"].to_dict()
    accuracy = {name: np.mean([truth[e] == label for e, label in labels.items()])
                for name, labels in (("majority", votes), ("dawid_skene", skene))}
    assert accuracy["dawid_skene"] > accuracy["majority"] + 0.03, accuracy


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=1), min_size=1, max_size=30),
       st.integers(1, 4))
def test_dawid_skene_equals_the_answers_when_nobody_disagrees(labels: list[list[str]], annotators: int) -> None:
    rows = [{"example_id": f"e{i}", "annotator": f"a{a}", "label": value[0]}
            for i, value in enumerate(labels) for a in range(annotators)]
    result = dawid_skene(pd.DataFrame(rows), ["a", "b", "c"])
    assert result["label"].to_dict() == {f"e{i}": value[0] for i, value in enumerate(labels)}


@given(st.lists(st.sampled_from("xyz"), min_size=1, max_size=12))
def test_majority_takes_the_most_frequent_and_the_first_on_ties(values: list[str]) -> None:
    vote = majority(values)
    counts = {v: values.count(v) for v in values}
    assert counts[vote.label] == max(counts.values())
    assert vote.label == next(v for v in values if counts[v] == max(counts.values()))
    assert vote.share == pytest.approx(counts[vote.label] / len(values))


def test_dawid_skene_refuses_labels_outside_the_classes() -> None:
    with pytest.raises(ValueError, match="not classes"):
        dawid_skene(pd.DataFrame([{"example_id": "e", "annotator": "a", "label": "q"}]), ["x", "y"])


def test_metric_names_are_accepted_by_mlflow_and_unique() -> None:
    from mlflow.utils.validation import _validate_metric_name

    people = ["bot1@bots.al-loop.local", "ann@x.org", "ann_x.org", ".", "..", "", "Zoë Müller"]
    names = metric_names(people)
    assert names["bot1@bots.al-loop.local"] == "bot1_bots.al-loop.local", "readable where it can be"
    assert len(set(names.values())) == len(people), "two people never share a metric"
    for name in names.values():
        _validate_metric_name(f"annotator/{name}/agreement")


def test_agreement_leaves_the_annotators_own_vote_out() -> None:
    # a spammer who always answers first and wrong, and a careful annotator, on 2-answer tasks: against a
    # consensus that includes one's own vote (ties to the first answer) the spammer would look perfect
    rows = []
    for i in range(25):
        rows += [{"example_id": f"e{i}", "annotator": "spam", "label": "x"},
                 {"example_id": f"e{i}", "annotator": "good", "label": "y"}]
    pairs = pd.DataFrame(rows)
    report = agreement_report(pairs, {f"e{i}": "x" for i in range(25)}, ["x", "y"], flag_min_items=5)
    assert report.flagged == [] and "agreement" not in report.annotators["good"], "one other answer: no verdict"
    decided = {f"e{i}": "y" for i in range(25)}  # a specialist decided them
    report = agreement_report(pairs, decided, ["x", "y"], flag_min_items=5, decided=decided)
    assert report.flagged == ["spam"] and report.annotators["good"]["agreement"] == 1.0
    more = pd.concat([pairs, pd.DataFrame([{"example_id": f"e{i}", "annotator": who, "label": "y"}
                                           for i in range(25) for who in ("third", "fourth")])])
    report = agreement_report(more, {}, ["x", "y"], flag_min_items=5)
    assert report.flagged == ["spam"] and report.annotators["good"]["agreement"] == 1.0


def test_an_annotator_is_judged_only_on_enough_overlapped_tasks() -> None:
    classes = [str(c) for c in range(4)]
    few, truth = _crowd([0.9, 0.85, 0.1], n=12, classes=4, seed=3)
    consensus = {e: majority(list(g["label"])).label for e, g in few.groupby("example_id")}
    report = agreement_report(few, consensus, classes, truth=truth)
    assert report.annotators["ann2"]["agreement"] < 0.5 and report.flagged == [], "12 tasks are too few to judge"
    assert agreement_report(few, consensus, classes, truth=truth, flag_min_items=10).flagged == ["ann2"]
