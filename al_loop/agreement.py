"""Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, Krippendorff's alpha, and each annotator's
agreement with the consensus (and accuracy against ground truth when it is known).

The statistics come from scikit-learn (Cohen), statsmodels (Fleiss) and the `krippendorff` package; this
module only shapes the answers for them and names the results as MLflow metrics.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
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
                     min_items: int = MIN_ITEMS, flag_min_items: int = MIN_FLAG_ITEMS) -> AgreementReport:
    """Agreement of a set of answers (columns example_id, annotator, label; one per annotator and example).

    An annotator's `agreement` is the share of their answers equal to the consensus, over examples with at
    least two answers; `accuracy` is against `truth` (simulation, or a gold set). An annotator is flagged
    when their agreement is below `flag_below` on at least `flag_min_items` such examples.
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
    for annotator, theirs in answers.groupby("annotator"):
        stats: dict[str, float] = {"answers": float(len(theirs))}
        overlapped = theirs[theirs["example_id"].isin(shared["example_id"])]
        agreed = [consensus.get(e) == v for e, v in zip(overlapped["example_id"], overlapped["label"], strict=True)
                  if e in consensus]
        if agreed:
            stats["agreement"] = float(np.mean(agreed))
        known = [truth.get(e) == v for e, v in zip(theirs["example_id"], theirs["label"], strict=True)
                 if truth is not None and truth.get(e) is not None]
        if known:
            stats["accuracy"] = float(np.mean(known))
        report.annotators[str(annotator)] = stats
        if len(agreed) >= flag_min_items and stats["agreement"] < flag_below:
            report.flagged.append(str(annotator))
    if truth is not None:
        known = [truth[e] == label for e, label in consensus.items() if truth.get(e) is not None]
        if known:
            report.overall["consensus_accuracy"] = float(np.mean(known))
    return report


def as_metrics(report: AgreementReport, prefix: str, per_annotator: bool = True) -> dict[str, float]:
    """MLflow metric names: `<prefix>/<statistic>`, `<prefix>/cohen_kappa/<a> vs <b>`, `annotator/<a>/<stat>`."""
    metrics = {f"{prefix}/{name}": value for name, value in report.overall.items()}
    if per_annotator:
        metrics |= {f"{prefix}/cohen_kappa/{metric_safe(a)} vs {metric_safe(b)}": v
                    for (a, b), v in report.pairs.items()}
        for annotator, stats in report.annotators.items():
            metrics |= {f"annotator/{metric_safe(annotator)}/{name}": v for name, v in stats.items()}
            metrics[f"annotator/{metric_safe(annotator)}/flagged"] = float(annotator in report.flagged)
    return metrics


def metric_safe(name: str) -> str:
    """An annotator name usable in an MLflow metric key (which refuses '@' and most punctuation)."""
    return re.sub(r"[^A-Za-z0-9_.\- ]", "_", name)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
