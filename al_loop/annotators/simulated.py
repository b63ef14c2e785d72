"""A simulated annotator: answers from the ground-truth label column, optionally with noise."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from al_loop.annotators.base import Annotation, PullResult, TaskRequest
from al_loop.clock import utc_now
from al_loop.errors import DataError


class SimulatedAnnotator:
    """An oracle over known labels. With `noise` > 0, each answer is a wrong class with that probability.

    Whether an answer is wrong depends only on (seed, example id), never on call order, so a resumed
    run gets the same answers as an uninterrupted one.
    """

    name = "simulated"

    def __init__(self, truth: Mapping[str, str | None], classes: Sequence[str], noise: float = 0.0,
                 seed: int = 0) -> None:
        missing = sum(1 for v in truth.values() if v is None)
        if missing:
            raise DataError(f"the simulated annotator needs a label for every pool row; {missing} row(s) have "
                            "none. Fill the label column or use a real annotator")
        self._truth = dict(truth)
        self._classes = list(classes)
        self._noise = noise
        self._seed = seed

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        unknown = [t.example_id for t in tasks if t.example_id not in self._truth]
        if unknown:
            raise KeyError(f"no ground truth for {unknown[:5]}")
        return {t.example_id: f"sim-{t.example_id}" for t in tasks}

    def pull(self, pending: Mapping[str, str | None], since: str | None = None) -> PullResult:
        now = utc_now()
        return PullResult(annotations=[
            Annotation(example_id=e, label=self.answer(e), annotator=self.name, created_at=now, lead_time=0.0)
            for e in pending])

    def answer(self, example_id: str) -> str:
        """The simulated answer for one example (deterministic)."""
        truth = str(self._truth[example_id])
        if self._noise <= 0:
            return truth
        digest = hashlib.sha256(f"{self._seed}:{example_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        if rng.random() >= self._noise:
            return truth
        wrong = [c for c in self._classes if c != truth]
        return str(wrong[rng.integers(len(wrong))])
