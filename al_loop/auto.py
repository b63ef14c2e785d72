"""`auto`: learn, as labels arrive, which strategy works on this data, with random among the arms.

Each batch holds a small share of uniform random "probes" (`PROBE_SHARE`, at least one row) and, for the rest,
the picks of one arm (a registry strategy) chosen by Thompson sampling. The evidence is unbiased: a probe is a
uniform draw from the unlabeled pool, labeled like any pick, and it is scored only by models that were fitted
before it was labeled (progressive validation, Blum, Kalai & Langford 1999). The reward of round s is the
improvement that round's batch brought, measured on every later probe: the Brier score of the model fitted on
the labels up to round s-1 minus that of the model fitted up to round s, per label. Rewards shrink as labels
grow whatever the arm, so the arm effects are estimated by weighted least squares with the budget trend
(log labels) as a covariate and a Gaussian prior that favours the literature's default (margin); the next arm
is a draw from that posterior (Thompson sampling). This follows the idea of Active Learning by Learning (Hsu &
Lin, AAAI 2015: a bandit over strategies, random among them, rewarded by an unbiased accuracy estimate), with
held-out probes in place of importance weights. Choices, probabilities and rewards are kept in the ledger, so a
resumed run makes the same choices, and logged to MLflow (`auto/*`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from al_loop.scoring import Ranked
from al_loop.selection import Needs, SelectionContext, get

ARMS = ("margin", "margin_diverse", "random")
PROBE_SHARE = 0.1
PRIOR_MEAN = {"margin": 1.0}  # in units of PRIOR_SD: margin is the strong default (Settles 2009; DESIGN.md)
PRIOR_SD = 1.0  # prior sd of an arm effect, in units of the rewards' spread
DRAWS = 2000


class Auto:
    """A bandit over strategies (ARMS) with unbiased rewards from random probes; see the module docstring."""

    name = "auto"
    needs = Needs(model=True, features=True, labeled=True)

    def __init__(self, arms: tuple[str, ...] = ARMS, probe_share: float = PROBE_SHARE) -> None:
        self.arms = arms
        self.probe_share = probe_share

    def select(self, ctx: SelectionContext) -> Ranked:
        history = _history(ctx)
        rewards = self.rewards(ctx, history)
        chance = self.chance_best(rewards, ctx.rng)
        arm = self.arms[int(ctx.rng.choice(len(self.arms), p=chance))]
        n_probes = self.n_probes(ctx.k, ctx.rng)
        probes = ctx.available[ctx.rng.permutation(len(ctx.available))[:n_probes]]
        rest = np.setdiff1d(ctx.available, probes, assume_unique=True)
        arm_ctx = SelectionContext(**{**ctx.__dict__, "available": rest, "k": ctx.k - len(probes), "notes": {}})
        picked = get(arm).select(arm_ctx) if arm_ctx.k > 0 else Ranked.empty()
        ctx.state[f"round/{ctx.round}"] = json.dumps({
            "arm": arm, "probes": probes.tolist(), "labels_before": len(ctx.labeled),
            "chance_best": dict(zip(self.arms, chance.round(4).tolist(), strict=True)),
            "rewarded_rounds": len(rewards)})
        ctx.notes.update({f"auto/p_{a}": float(p) for a, p in zip(self.arms, chance, strict=True)})
        ctx.notes.update({"auto/arm": float(self.arms.index(arm)), "auto/probes": float(len(probes)),
                          "auto/rewarded_rounds": float(len(rewards))})
        return Ranked(np.concatenate([picked.rows, probes]),
                      np.concatenate([picked.scores, np.full(len(probes), np.nan)]))

    def n_probes(self, k: int, rng: np.random.Generator) -> int:
        """PROBE_SHARE of the batch, at least one row (a batch of one is a probe with that probability)."""
        if k <= 1:
            return int(rng.random() < self.probe_share) if k == 1 else 0
        return max(1, round(self.probe_share * k))

    def rewards(self, ctx: SelectionContext, history: dict[int, dict[str, Any]]
                ) -> list[tuple[str, float, float, int]]:
        """(arm, log labels before, reward per label, probes it was measured on) of each auto round so far whose
        labels are in and which later probes can judge."""
        if ctx.fit is None or not history:
            return []
        label_round = dict(zip(ctx.labeled.tolist(), ctx.label_rounds.tolist(), strict=True))
        y_of = dict(zip(ctx.labeled.tolist(), ctx.labels.tolist(), strict=True))
        per_round = Counter(label_round.values())  # labels each round brought in
        out = []
        for s in sorted(history):
            later = [r for t, h in history.items() if t > s for r in h["probes"] if r in y_of]
            if not later:
                continue
            before = _model_up_to(ctx, label_round, y_of, per_round, s - 1)
            after = _model_up_to(ctx, label_round, y_of, per_round, s)
            if before is None or after is None:
                continue
            rows = np.array(later)
            truth = np.array([y_of[r] for r in later], dtype=object)
            gain = _brier(before, ctx.x_pool[rows], truth) - _brier(after, ctx.x_pool[rows], truth)
            batch = per_round[s]
            if batch == 0:
                continue
            out.append((history[s]["arm"], float(np.log(max(history[s]["labels_before"], 1))),
                        float(gain.mean()) / batch, len(later)))
        return out

    def chance_best(self, rewards: list[tuple[str, float, float, int]], rng: np.random.Generator) -> np.ndarray:
        """Posterior probability that each arm has the largest effect (Monte Carlo over the Gaussian posterior
        of a weighted linear model: reward ~ slope x log(labels) + effect[arm]); the prior alone while fewer
        than three rounds are rewarded."""
        prior_mean = np.array([PRIOR_MEAN.get(arm, 0.0) for arm in self.arms])
        if len(rewards) < 3:
            mean, cov = prior_mean * PRIOR_SD, np.eye(len(self.arms)) * PRIOR_SD**2
        else:
            mean, cov = _arm_effects(rewards, self.arms, prior_mean)
        draws = rng.multivariate_normal(mean, (cov + cov.T) / 2, size=DRAWS, method="cholesky")
        return np.bincount(draws.argmax(axis=1), minlength=len(self.arms)) / DRAWS


def _arm_effects(rewards: list[tuple[str, float, float, int]], arms: tuple[str, ...], prior_mean: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of the arm effects: weighted least squares (weights: probes behind each
    reward) with a Gaussian prior on the effects, in units of the rewards' spread; the residual variance is
    estimated from a first fit and the fit repeated with it."""
    y = np.array([r[2] for r in rewards])
    weights = np.array([r[3] for r in rewards], dtype=float)
    scale = float(np.std(y)) or 1e-6
    design = np.array([[r[1]] + [float(r[0] == arm) for arm in arms] for r in rewards])
    # no prior on the trend slope; the arm columns carry the intercept
    prior_precision = np.diag([0.0] + [1.0 / (PRIOR_SD * scale) ** 2] * len(arms))
    prior_center = np.r_[0.0, prior_mean * PRIOR_SD * scale]
    residual_var = scale**2
    for _ in range(2):
        precision = design.T @ (design * weights[:, None]) / residual_var + prior_precision
        cov = np.linalg.inv(precision + np.eye(len(arms) + 1) * 1e-12)
        beta = cov @ (design.T @ (weights * y) / residual_var + prior_precision @ prior_center)
        dof = max(weights.sum() - len(arms) - 1, 1.0)
        residual_var = max(float((weights * (y - design @ beta) ** 2).sum() / dof), 1e-12)
    return beta[1:], cov[1:, 1:]


def _history(ctx: SelectionContext) -> dict[int, dict[str, Any]]:
    """The auto rounds before this one, as recorded in the strategy's memory."""
    out = {}
    for r in range(ctx.round):
        value = ctx.state.get(f"round/{r}")
        if value is not None:
            out[r] = json.loads(value)
    return out


def _model_up_to(ctx: SelectionContext, label_round: dict[int, int], y_of: dict[int, Any],
                 per_round: Counter[int], last_round: int) -> Any:
    """The model fitted on the labels of rounds <= last_round (cached for the run; the rows are gathered only
    when it has to be fitted)."""
    count = sum(n for r, n in per_round.items() if r <= last_round)
    if count == 0:
        return None
    key = ("auto-model", last_round, count)
    if key not in ctx.cache:
        rows = np.array(sorted(r for r, t in label_round.items() if t <= last_round), dtype=np.int64)
        ctx.cache[key] = ctx.fit(rows, np.array([y_of[r] for r in rows], dtype=object))
    return ctx.cache[key]


def _brier(model: Any, x: Any, truth: np.ndarray) -> np.ndarray:
    """Per-row Brier score (sum over classes of the squared error) of a model's probabilities."""
    proba = model.predict_proba(x)
    onehot = (np.asarray(model.classes, dtype=object)[None, :] == truth[:, None]).astype(float)
    return ((proba - onehot) ** 2).sum(axis=1)
