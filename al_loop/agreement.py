"""Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, Krippendorff's alpha, and each annotator's
agreement with the consensus (and accuracy against ground truth when it is known).

The statistics come from scikit-learn (Cohen), statsmodels (Fleiss) and the `krippendorff` package; this
module only shapes the answers for them and names the results as MLflow metrics.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

MIN_ITEMS = 5  # fewer shared items than this make a pair's kappa noise
MIN_FLAG_ITEMS = 20  # an annotator is judged on at least this many overlapped tasks (5 flagged good ones early)


@dataclass
class AgreementReport:
    """Agreement statistics (NaN-free: a statistic that cannot be computed is left out) and flagged annotators."""

    overall: dict[str, float] = field(default_factory=dict)
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    annotators: dict[str, dict[str, float]] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)


def answer_matrix(answers: pd.DataFrame) -> pd.DataFrame:
    """Examples x annotators, each cell an annotator's (latest) answer or NaN."""
    return answers.pivot_table(index="example_id", columns="annotator", values="label", aggfunc="last")


def fleiss(answers: pd.DataFrame, classes: Sequence[str]) -> float | None:
    """Fleiss' kappa over the examples answered by the most common number (>= 2) of annotators.

    Fleiss' kappa assumes the same number of ratings per example; examples with another count are left out
    (Krippendorff's alpha uses them all).
    """
    counts = pd.crosstab(answers["example_id"], pd.Categorical(answers["label"], categories=list(classes)),
                         dropna=False)
    raters = counts.sum(axis=1)
    raters = raters[raters >= 2]
    if raters.empty:
        return None
    table = counts.loc[raters[raters == raters.mode().max()].index].to_numpy()
    if len(table) < 2:
        return None
    with warnings.catch_warnings():  # everyone gave one class: kappa is 0/0, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(fleiss_kappa(table, method="fleiss"))


def alpha(answers: pd.DataFrame, classes: Sequence[str]) -> float | None:
    """Krippendorff's alpha (nominal) over all answers; examples with one answer carry no information."""
    matrix = answer_matrix(answers)
    codes = {c: i for i, c in enumerate(classes)}
    data = matrix.T.apply(lambda column: column.map(codes)).to_numpy(dtype=float)  # annotators x examples
    if (np.sum(~np.isnan(data), axis=0) >= 2).sum() == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None
    return _finite(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal",
                                      value_domain=list(range(len(classes)))))


def cohen_pairs(answers: pd.DataFrame, classes: Sequence[str], min_items: int = MIN_ITEMS
                ) -> dict[tuple[str, str], float]:
    """Cohen's kappa of each annotator pair on the examples both answered (pairs with >= min_items of them)."""
    matrix = answer_matrix(answers)
    out: dict[tuple[str, str], float] = {}
    for a, b in combinations(sorted(matrix.columns), 2):
        both = matrix[[a, b]].dropna()
        if len(both) < min_items:
            continue
        with warnings.catch_warnings():  # one class only on both sides: kappa is 0/0, left out
            warnings.simplefilter("ignore")
            kappa = _finite(cohen_kappa_score(both[a], both[b], labels=list(classes)))
        if kappa is not None:
            out[(a, b)] = kappa
    return out


def agreement_report(answers: pd.DataFrame, consensus: Mapping[str, str], classes: Sequence[str],
                     truth: Mapping[str, str] | None = None, flag_below: float = 0.5,
                     min_items: int = MIN_ITEMS, flag_min_items: int = MIN_FLAG_ITEMS,
                     decided: Mapping[str, str] | None = None) -> AgreementReport:
    """Agreement of a set of answers (columns example_id, annotator, label; one per annotator and example).

    An annotator's `agreement` is the share of their answers equal to a reference: the label in `decided` (a
    quality-weighted consensus such as Dawid-Skene, which weighs each vote by the voter's estimated
    reliability), else the majority of the *other* answers when there are at least two and no tie.
    Leaving their own vote out of a plain majority matters: with it, whoever wins the ties looks reliable.
    `accuracy` is against `truth` (simulation, or a gold set); `consensus` (the training labels) is scored
    against it as `consensus_accuracy`. An annotator is flagged when their
    agreement is below `flag_below` on at least `flag_min_items` examples.
    """
    report = AgreementReport()
    if answers.empty:
        return report
    answers = answers.assign(example_id=answers["example_id"].astype(str))
    per_example = answers.groupby("example_id")["annotator"].transform("nunique")
    shared = answers[per_example >= 2]
    report.overall["examples"] = float(answers["example_id"].nunique())
    report.overall["overlapped_examples"] = float(shared["example_id"].nunique())
    for name, value in (("krippendorff_alpha", alpha(shared, classes)), ("fleiss_kappa", fleiss(shared, classes))):
        if value is not None:
            report.overall[name] = value
    report.pairs = cohen_pairs(shared, classes, min_items)
    if report.pairs:
        report.overall["cohen_kappa_mean"] = float(np.mean(list(report.pairs.values())))
    agreed = _agreement_with_others(shared, decided or {})
    for annotator, theirs in answers.groupby("annotator"):
        stats: dict[str, float] = {"answers": float(len(theirs))}
        mine = agreed.get(str(annotator), [])
        if mine:
            stats["agreement"] = float(np.mean(mine))
        known = [truth.get(e) == v for e, v in zip(theirs["example_id"], theirs["label"], strict=True)
                 if truth is not None and truth.get(e) is not None]
        if known:
            stats["accuracy"] = float(np.mean(known))
        report.annotators[str(annotator)] = stats
        if len(mine) >= flag_min_items and stats["agreement"] < flag_below:
            report.flagged.append(str(annotator))
    if truth is not None:
        known = [truth[e] == label for e, label in consensus.items() if truth.get(e) is not None]
        if known:
            report.overall["consensus_accuracy"] = float(np.mean(known))
    return report


def _agreement_with_others(shared: pd.DataFrame, decided: Mapping[str, str]) -> dict[str, list[bool]]:
    """For each annotator, whether each of their answers matches the others' consensus (where there is one)."""
    out: dict[str, list[bool]] = {}
    for example, group in shared.groupby("example_id", sort=False):
        labels, who = list(group["label"]), list(group["annotator"])
        for i, (annotator, label) in enumerate(zip(who, labels, strict=True)):
            reference = decided.get(str(example))
            if reference is None:
                others = Counter(labels[:i] + labels[i + 1:])
                ranked = others.most_common(2)
                if sum(others.values()) < 2 or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
                    continue  # one other answer, or a tie: no consensus to agree with
                reference = ranked[0][0]
            out.setdefault(str(annotator), []).append(label == reference)
    return out


def as_metrics(report: AgreementReport, prefix: str, per_annotator: bool = True) -> dict[str, float]:
    """MLflow metric names: `<prefix>/<statistic>`, `<prefix>/cohen_kappa/<a> vs <b>`, `annotator/<a>/<stat>`."""
    metrics = {f"{prefix}/{name}": value for name, value in report.overall.items()}
    if per_annotator:
        names = metric_names(report.annotators)
        metrics |= {f"{prefix}/cohen_kappa/{names[a]} vs {names[b]}": v for (a, b), v in report.pairs.items()}
        for annotator, stats in report.annotators.items():
            metrics |= {f"annotator/{names[annotator]}/{name}": v for name, v in stats.items()}
            metrics[f"annotator/{names[annotator]}/flagged"] = float(annotator in report.flagged)
    return metrics


def metric_names(annotators: Iterable[str]) -> dict[str, str]:
    """A name per annotator usable in an MLflow metric key (which refuses '@' and most punctuation): the name
    with other characters replaced by '_'; a short hash is added where that leaves nothing readable or where
    two annotators would get the same name."""
    annotators = sorted(set(annotators))
    slugs = {a: re.sub(r"[^A-Za-z0-9_.\- ]", "_", a).strip(" ") for a in annotators}
    taken = Counter(slugs.values())
    return {a: slug if taken[slug] == 1 and slug.strip(".") else
            f"{slug.strip('.') or 'annotator'}-{hashlib.sha256(a.encode()).hexdigest()[:6]}"
            for a, slug in slugs.items()}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
