"""Simulated annotators: an oracle answering from the ground-truth label column (optionally with noise), or a
crowd of annotators with their own accuracies, several of whom answer each overlapped example."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from al_loop.annotators.base import Annotation, PullResult, TaskRequest
from al_loop.annotators.draws import keyed_rng, noisy_answer, wrong_class
from al_loop.clock import utc_now
from al_loop.errors import DataError


class SimulatedAnnotator:
    """An oracle over known labels. With `noise` > 0, each answer is a wrong class with that probability.

    With `accuracy` (one value per annotator) it is a crowd named `<prefix>1`, `<prefix>2`, ...: each
    example is answered by `required(example_id)` of them, each right with their accuracy, else a uniformly
    random wrong class. Every draw depends only on (seed, example id, annotator), never on call order, so a
    resumed run gets the same answers as an uninterrupted one.
    """

    name = "simulated"

    def __init__(self, truth: Mapping[str, str | None], classes: Sequence[str], noise: float = 0.0,
                 seed: int = 0, accuracy: Sequence[float] | None = None,
                 required: Callable[[str], int] | None = None, prefix: str = "sim") -> None:
        missing = sum(1 for v in truth.values() if v is None)
        if missing:
            raise DataError(f"the simulated annotator needs a label for every pool row; {missing} row(s) have "
                            "none. Fill the label column or use a real annotator")
        self._truth = dict(truth)
        self._classes = list(classes)
        self._noise = noise
        self._seed = seed
        self._accuracy = None if accuracy is None else list(accuracy)
        self._required = required or (lambda _example: 1)
        self._prefix = prefix

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        unknown = [t.example_id for t in tasks if t.example_id not in self._truth]
        if unknown:
            raise KeyError(f"no ground truth for {unknown[:5]}")
        return {t.example_id: f"sim-{t.example_id}" for t in tasks}

    def pull(self, pending: Mapping[str, str | None], since: str | None = None,
             closed: Mapping[str, str] | None = None) -> PullResult:
        now = utc_now()
        if self._accuracy is None:
            return PullResult(annotations=[
                Annotation(example_id=e, label=self.answer(e), annotator=self.name, created_at=now, lead_time=0.0)
                for e in pending])
        return PullResult(annotations=[
            Annotation(example_id=e, label=label, annotator=who, created_at=now, lead_time=0.0)
            for e in pending for who, label in self.crowd_answers(e)])

    def answer(self, example_id: str) -> str:
        """The oracle's answer for one example (deterministic)."""
        truth = str(self._truth[example_id])
        if self._noise <= 0:
            return truth
        rng = keyed_rng(self._seed, example_id)
        return truth if rng.random() >= self._noise else wrong_class(truth, self._classes, rng)

    def crowd_answers(self, example_id: str) -> list[tuple[str, str]]:
        """(annotator, answer) of the crowd members who answer this example, in the order they answer
        (deterministic)."""
        accuracy = self._accuracy or [1.0]
        count = min(self._required(example_id), len(accuracy))
        chosen = keyed_rng(self._seed, f"{self._prefix}:{example_id}").choice(len(accuracy), count, replace=False)
        truth = str(self._truth[example_id])
        answers = []
        for member in (int(c) for c in chosen):  # in a random order: a majority tie goes to the first answer
            rng = keyed_rng(self._seed, f"{self._prefix}:{example_id}/{member}")
            answers.append((f"{self._prefix}{member + 1}", noisy_answer(truth, self._classes, accuracy[member], rng)))
        return answers
