"""The annotator interface: where labels come from (Label Studio, or a simulated oracle).

Contract, so that the loop can resume after a crash anywhere:
- `push` must be idempotent by example id: pushing an example that the annotator already has returns
  its existing task id instead of creating a second task.
- `pull` is given what the ledger still waits for and the cursor of the last recorded pull; it returns
  whatever is completed so far (possibly nothing, possibly part of the batch, possibly updated answers to
  older tasks) and a new cursor; calling it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TaskRequest:
    """One example to label, with the model's guess to pre-fill and its rank by ambiguity."""

    example_id: str
    round: int
    rank: int
    data: dict[str, Any]
    predicted_label: str | None = None
    confidence: float | None = None
    ambiguity: float | None = None
    model_version: str | None = None
    purpose: str = "train"  # "eval": an evaluation task, never used for training
    overlap: int = 1  # how many annotators answer it
    order: int | None = None  # place in al-loop's queue across rounds (earlier rounds first, then rank)
    prior_answers: tuple[tuple[str, str], ...] = ()  # for a specialist: (annotator, label) given before


@dataclass(frozen=True)
class Annotation:
    """One answer from one annotator (a human, a bot, or the simulation)."""

    example_id: str
    label: str
    annotator: str
    created_at: str
    updated_at: str | None = None
    lead_time: float | None = None
    external_id: str | None = None


@dataclass
class PullResult:
    """What a pull found: new or updated answers, skips, and examples whose task is gone."""

    annotations: list[Annotation] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # skipped by everyone asked
    cancelled: dict[str, int] = field(default_factory=dict)  # example -> annotators who skipped its task
    removed: list[str] = field(default_factory=list)  # examples whose task is gone (answered ones included)
    cursor: str | None = None  # where the next pull starts (opaque to the loop; stored with the answers)
    # task id -> external ids of the answers the task holds now, for every task the pull read: an answer
    # pulled earlier from that task and missing here was deleted
    held: dict[str, frozenset[str]] = field(default_factory=dict)


class Annotator(Protocol):
    """Where labels come from."""

    name: str

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        """Create tasks (idempotently); returns example id -> task id."""
        ...

    def pull(self, pending: Mapping[str, str | None], since: str | None = None,
             closed: Mapping[str, str] | None = None) -> PullResult:
        """Fetch answers completed or changed since the cursor `since` (None: from the start).

        `pending` maps each awaited example id to its task id; `closed` the answered (or skipped) ones, whose
        task may have been deleted since (reported in `removed`). The result's cursor is stored in the ledger
        in the same transaction as its answers, so a crash never skips past an unrecorded answer. An answer
        submitted without a choice comes back with an empty label.
        """
        ...
