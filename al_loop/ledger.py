"""The ledger: a durable SQLite record of every example's status, every annotation and every round.

It is the single source of truth of a run. Every change is one transaction, written before and after
each external call, so a run interrupted anywhere resumes without picking an example twice or losing a
label. A file lock (released by the OS if the process dies) keeps a second process out.

Examples never touched by the loop are not stored: absent means unlabeled, so a pool of millions costs
nothing here. Statuses: unlabeled (returned to the pool), queued (picked, maybe pushed), labeled, skipped.

An example asks for `required` answers (its overlap). It stays queued until that many annotators answered
or skipped it; then its training label is the consensus of the answers, or, when they disagree beyond the
adjudication rule, it waits (adjudication "pending") for a specialist, whose answer wins.

Answers deleted in the annotation tool are retired (kept, with `deleted_at`), never erased; a labeled example
left with fewer answers than it asks for goes back to waiting on its task. A submission without a choice is
kept as an answer with an empty value: it counts for nothing, but is reported until someone answers.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from al_loop.annotators.base import Annotation, PullResult
from al_loop.clock import utc_now
from al_loop.consensus import EXPERT, MAJORITY, SINGLE, majority
from al_loop.errors import (
    AlLoopError,
    BrokenStateError,
    LedgerBusyError,
    LedgerMismatchError,
    StorageError,
    storage_error,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('unlabeled', 'queued', 'labeled', 'skipped')),
    round INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    ambiguity REAL,
    predicted_label TEXT,
    confidence REAL,
    model_version TEXT,
    task_id TEXT,
    pushed_at TEXT,
    label TEXT,
    purpose TEXT NOT NULL DEFAULT 'train' CHECK (purpose IN ('train', 'eval')),
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS examples_status ON examples (status);
CREATE TABLE IF NOT EXISTS annotations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    example_id TEXT NOT NULL REFERENCES examples (id),
    value TEXT NOT NULL,
    annotator TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    lead_time REAL,
    external_id TEXT,
    round INTEGER NOT NULL,
    model_version TEXT,
    predicted_label TEXT,
    confidence REAL,
    superseded_by INTEGER REFERENCES annotations (seq),
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_example ON annotations (example_id);
CREATE TABLE IF NOT EXISTS routed (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    predicted TEXT NOT NULL,
    confidence REAL NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('auto', 'review')),
    hi REAL NOT NULL,
    model TEXT NOT NULL,
    task_id TEXT,
    label TEXT,
    annotator TEXT,
    lead_time REAL,
    labeled_at TEXT,
    routed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS examples_round ON examples (round);
CREATE INDEX IF NOT EXISTS examples_task ON examples (task_id);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'evaluated', 'logged')),
    batch_size INTEGER NOT NULL,
    model_version TEXT,
    n_labels INTEGER,
    metrics TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
"""
# Columns added after the first release: created on new ledgers and added to old ones when opened.
ADDED_COLUMNS = [
    ("examples", "purpose", "TEXT NOT NULL DEFAULT 'train'"),
    ("examples", "required", "INTEGER NOT NULL DEFAULT 1"),  # answers asked for (the overlap)
    ("examples", "skips", "INTEGER NOT NULL DEFAULT 0"),  # annotators who skipped it
    ("examples", "label_method", "TEXT"),  # single, majority, dawid_skene, expert
    ("examples", "agreement", "REAL"),  # share of the answers that gave the most common one
    ("examples", "adjudication", "TEXT"),  # null, pending, expert, expert_skipped
    ("examples", "escalated_at", "TEXT"),
    ("examples", "expert_task_id", "TEXT"),
    ("annotations", "lane", "TEXT NOT NULL DEFAULT 'routine'"),  # routine annotators, or expert
    ("annotations", "deleted_at", "TEXT"),  # retired: deleted in the annotation tool (kept for the trail)
]
# Indexes on columns added after the first release (created once those exist): the per-round reads of the
# specialist lane and of routed traffic search them instead of scanning the tables.
INDEXES = """
CREATE INDEX IF NOT EXISTS examples_adjudication ON examples (adjudication) WHERE adjudication IS NOT NULL;
CREATE INDEX IF NOT EXISTS routed_waiting ON routed (decision) WHERE task_id IS NOT NULL AND label IS NULL;
CREATE INDEX IF NOT EXISTS routed_reviewed ON routed (labeled_at, id) WHERE label IS NOT NULL;
"""
ROUTINE, EXPERT_LANE = "routine", "expert"
EMPTY = ""  # the value of a submission without a choice


@dataclass(frozen=True)
class Pick:
    """One example chosen for labeling, with what the model thought when it was picked."""

    example_id: str
    rank: int
    ambiguity: float | None
    predicted_label: str | None
    confidence: float | None
    required: int = 1  # how many annotators answer it


@dataclass(frozen=True)
class Settlement:
    """What happens when an example has all its answers: escalate a split below this share of agreement to
    a specialist (None: never), and return an example everyone skipped to the pool instead of skipping it."""

    escalate_below: float | None = None
    repush_skipped: bool = False


@dataclass(frozen=True)
class RoundRecord:
    """A round as stored: status queued -> evaluated -> logged."""

    round: int
    strategy: str
    status: str
    batch_size: int
    model_version: str | None
    n_labels: int | None
    metrics: dict[str, float]


class Ledger:
    """Durable state of one loop run. Open it with `Ledger.open(path)` as a context manager."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._mirror: _Mirror | None = None
        self._mirror_mark: tuple[int, int] | None = None  # (this connection's total changes, data_version)

    # -- opening and identity ---------------------------------------------------------------------

    @classmethod
    @contextmanager
    def open(cls, path: str | Path) -> Iterator[Ledger]:
        """Open (creating if needed) and lock the ledger; a second process gets LedgerBusyError.

        A ledger that is not a readable SQLite database (truncated, overwritten) is a BrokenStateError naming it, a
        disk that refuses a write a StorageError, whenever the ledger is used inside the `with` block."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _ledger_error(path, error) or error from None
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise LedgerBusyError(
                f"another al-loop process is using the ledger {path} (lock file {path}.lock). Wait for it to "
                "finish or stop it; a lock left by a crashed process is released automatically") from None
        except OSError as error:
            raise _ledger_error(path, error) or error from None
        existed = path.is_file() and path.stat().st_size > 0
        try:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        except sqlite3.Error as error:
            lock.release()
            raise _ledger_error(path, error) or error from None
        try:
            try:
                if existed:
                    _check_readable(connection)
                connection.execute("PRAGMA foreign_keys = ON")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = FULL")
                connection.executescript(SCHEMA)
                _add_columns(connection)
            except sqlite3.Error as error:
                raise _ledger_error(path, error) or error from None
            try:
                yield cls(connection, path)
            except (sqlite3.Error, OSError) as error:  # used while open: damaged pages, a full disk
                translated = _ledger_error(path, error)
                if translated is None:
                    raise
                raise translated from error
        finally:
            connection.close()
            lock.release()

    @classmethod
    @contextmanager
    def read_only(cls, path: str | Path) -> Iterator[Ledger]:
        """Open an existing ledger for reading, without the lock: safe while a loop is running (WAL)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(path)
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            yield cls(connection, path)
        finally:
            connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing write: commits on success, rolls back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the in-memory mirror of what each round reads --------------------------------------------

    def _mark(self) -> tuple[int, int]:
        """What says whether the database changed: every row this connection wrote, and any other connection's
        commit (SQLite's data_version)."""
        return self._db.total_changes, self._db.execute("PRAGMA data_version").fetchone()[0]

    def _state(self) -> _Mirror:
        """The mirror, rebuilt by a full scan when anything wrote to the ledger without patching it (a write of
        another connection, a raw write through the connection, a failed patch): it never outlives a change."""
        mark = self._mark()
        if self._mirror is None or self._mirror_mark != mark:
            self._mirror = _Mirror.scan(self._db)
            self._mirror_mark = mark
        return self._mirror

    @contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, _Touched]]:
        """A transaction of one of the ledger's writes, which names the examples and rounds it may change: after
        the commit the mirror (if it was current) re-reads just those, so a round's bookkeeping costs O(batch)."""
        current = self._mirror is not None and self._mirror_mark == self._mark()
        touched = _Touched()
        with self.transaction() as db:
            yield db, touched
        self._mirror_mark = None  # until patched: a failed patch means a full scan at the next read
        if current and self._mirror is not None:
            self._mirror.patch(self._db, touched)
            self._mirror_mark = self._mark()

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as (db, _):
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def bind(self, identity: dict[str, str]) -> None:
        """Record what this ledger belongs to, or refuse if it belongs to something else, naming what differs.

        A value may carry `settings` (what it hashes, stored beside it as `<key>.settings`, so that a refusal names
        each setting that differs with its old and new value) and `legacy` (the hash an earlier version stored for
        the same thing: accepted, and replaced by the new value)."""
        stored = {key: self.get_meta(key) for key in identity}
        upgraded = {key: str(value) for key, value in identity.items()
                    if stored[key] not in (None, value) and stored[key] == getattr(value, "legacy", None)}
        mismatched = [key for key, value in identity.items()
                      if stored[key] not in (None, value) and key not in upgraded]
        if mismatched:
            details = "".join(f"{text} " for key in mismatched if (text := self._difference(key, identity[key],
                                                                                            stored[key])))
            raise LedgerMismatchError(
                f"the ledger {self.path} was started with a different {', '.join(mismatched)}; resuming would "
                f"mix two experiments. {details}Restore the original config/data, or set a new output_dir")
        settings = {f"{key}.settings": json.dumps(value.settings, sort_keys=True) for key, value in identity.items()
                    if isinstance(getattr(value, "settings", None), dict)}
        with self._write() as (db, _):
            db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                           [(key, str(value)) for key, value in identity.items()])
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                           "excluded.value", [*upgraded.items(), *settings.items()])

    def _difference(self, key: str, value: str, stored: str | None) -> str:
        """What differs between the identity `key` stored in this ledger and `value`, in words."""
        if key == "pool_fingerprint":
            return "The pool's ids differ (rows added, removed or reordered since the run started)."
        new = getattr(value, "settings", None)
        old_text = self.get_meta(f"{key}.settings")
        if not isinstance(new, dict) or old_text is None:
            return (f"This ledger ({key} {stored}) was started by an earlier al-loop, which did not record its "
                    f"settings ({key} is now {value}), so the one that differs cannot be named: compare with the "
                    "config it was started with. If only the config or data files moved, move them back and run "
                    "once: the ledger then records an identity that survives moves.") if new is not None else ""
        old = json.loads(old_text)
        changes = [f"{name}: {_shown(old.get(name))} then, {_shown(new.get(name))} now"
                   for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        return f"Changed: {'; '.join(changes)}." if changes else ""

    # -- picking and pushing ----------------------------------------------------------------------

    def queue_round(self, round_index: int, strategy: str, model_version: str | None,
                    picks: Sequence[Pick], purpose: str = "train") -> None:
        """Record a new round and its picks as queued, in one transaction.

        Refuses (and writes nothing) if any pick was already queued, labeled or skipped. Picks with purpose
        "eval" form the evaluation set: labeled like the others, never used for training.
        """
        now = utc_now()
        ids = [p.example_id for p in picks]
        if len(set(ids)) != len(ids):
            raise ValueError("a round cannot pick the same example twice")
        with self._write() as (db, touched):
            touched.examples.update(ids)
            touched.rounds.add(round_index)
            taken = _fetch_taken(db, ids)
            if taken:
                raise ValueError(f"examples already in use, not picked again: {taken[:5]}")
            db.execute("INSERT INTO rounds (round, strategy, status, batch_size, model_version, started_at) "
                       "VALUES (?, ?, 'queued', ?, ?, ?)", (round_index, strategy, len(picks), model_version, now))
            db.executemany(
                "INSERT INTO examples (id, status, round, rank, ambiguity, predicted_label, confidence, "
                "model_version, purpose, required, updated_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = 'queued', round = excluded.round, rank = excluded.rank, "
                "ambiguity = excluded.ambiguity, predicted_label = excluded.predicted_label, "
                "confidence = excluded.confidence, model_version = excluded.model_version, task_id = NULL, "
                "pushed_at = NULL, label = NULL, purpose = excluded.purpose, required = excluded.required, "
                "skips = 0, label_method = NULL, agreement = NULL, adjudication = NULL, escalated_at = NULL, "
                "expert_task_id = NULL, updated_at = excluded.updated_at",
                [(p.example_id, round_index, p.rank, p.ambiguity, p.predicted_label, p.confidence, model_version,
                  purpose, p.required, now) for p in picks])

    def unpushed(self) -> list[tuple[str, int, int]]:
        """Queued examples not yet confirmed as pushed: (id, round, rank), in rank order."""
        return self._db.execute("SELECT id, round, rank FROM examples WHERE status = 'queued' AND task_id IS NULL "
                                "ORDER BY round, rank").fetchall()

    def pick_of(self, example_id: str) -> Pick:
        row = self._db.execute("SELECT id, rank, ambiguity, predicted_label, confidence, required FROM examples "
                               "WHERE id = ?", (example_id,)).fetchone()
        return Pick(*row)

    def mark_pushed(self, task_ids: dict[str, str]) -> None:
        """Record the annotator's task id of each pushed example."""
        now = utc_now()
        with self._write() as (db, touched):
            touched.examples.update(task_ids)
            db.executemany("UPDATE examples SET task_id = ?, pushed_at = ?, updated_at = ? "
                           "WHERE id = ? AND status = 'queued'",
                           [(str(task), now, now, example) for example, task in task_ids.items()])

    def pending(self) -> dict[str, str | None]:
        """Queued examples waiting for (more) answers from the routine annotators: example id -> task id."""
        return dict(self._db.execute("SELECT id, task_id FROM examples WHERE status = 'queued' AND "
                                     "adjudication IS NULL").fetchall())

    def closed_tasks(self) -> dict[str, str]:
        """Labeled or skipped examples and the task that answered them: example id -> task id (a pull checks
        that these tasks still exist)."""
        return dict(self._state().closed)

    def empty_submissions(self) -> list[dict[str, object]]:
        """Submissions without a choice on examples still waiting, whose annotator has not answered since:
        example_id, task_id, annotator, round, required (answers asked for), oldest first."""
        return _rows(self._db.execute(
            "SELECT a.example_id, e.task_id, a.annotator, e.round, e.required FROM annotations a JOIN examples e "
            "ON e.id = a.example_id AND e.round = a.round WHERE e.status = 'queued' AND e.adjudication IS NULL "
            "AND a.lane = 'routine' AND a.value = '' AND a.superseded_by IS NULL AND a.deleted_at IS NULL AND NOT "
            "EXISTS (SELECT 1 FROM annotations b WHERE b.example_id = a.example_id AND b.round = a.round AND "
            "b.annotator = a.annotator AND b.lane = 'routine' AND b.value <> '' AND b.superseded_by IS NULL AND "
            "b.deleted_at IS NULL) ORDER BY a.created_at, a.seq"))

    # -- the specialist lane ----------------------------------------------------------------------

    def escalations_unpushed(self) -> list[tuple[str, int, int]]:
        """Examples waiting for a specialist whose task is not created yet: (id, round, rank), oldest first."""
        return self._db.execute("SELECT id, round, rank FROM examples WHERE adjudication = 'pending' AND "
                                "expert_task_id IS NULL ORDER BY escalated_at, round, rank").fetchall()

    def mark_escalations_pushed(self, task_ids: dict[str, str]) -> None:
        with self._write() as (db, touched):
            touched.examples.update(task_ids)
            db.executemany("UPDATE examples SET expert_task_id = ?, updated_at = ? WHERE id = ? AND "
                           "adjudication = 'pending'", [(str(t), utc_now(), e) for e, t in task_ids.items()])

    def escalations_pending(self) -> dict[str, str]:
        """Specialist tasks waiting for an answer: example id -> task id."""
        return dict(self._db.execute("SELECT id, expert_task_id FROM examples WHERE adjudication = 'pending' AND "
                                     "expert_task_id IS NOT NULL").fetchall())

    def answers_of(self, example_id: str) -> list[tuple[str, str]]:
        """The current routine answers to an example: (annotator, label), oldest first."""
        return [(who, value) for _, who, value, _, _ in _in_force(self._db, ROUTINE, example_id)]

    # -- answers ----------------------------------------------------------------------------------

    def record_annotations(self, annotations: Iterable[Annotation], lane: str = ROUTINE,
                           settlement: Settlement | None = None) -> int:
        """Store annotations and settle the examples they answer, in one transaction.

        An annotation already stored (same example, annotator, external id, update time and value) is
        ignored, so pulling twice is harmless. A newer version of an annotation (same external id) supersedes
        the older one, which is kept for the audit trail. Returns the number of new annotations.
        """
        with self._write() as (db, changed):
            added, touched = _insert_annotations(db, annotations, strict=True, lane=lane)
            changed.examples.update(touched)
            _settle(db, touched, settlement or Settlement())
            return added

    def record_skipped(self, example_ids: Iterable[str]) -> None:
        """Mark queued examples the annotators skipped; they are not picked again."""
        example_ids = list(example_ids)
        with self._write() as (db, touched):
            touched.examples.update(example_ids)
            _mark_skipped(db, example_ids)

    def record_pull(self, result: PullResult, cursor_key: str = "pull_cursor", lane: str = ROUTINE,
                    settlement: Settlement | None = None) -> int:
        """Store everything one pull found, and the annotator's cursor, in one transaction.

        Annotations for examples this ledger never picked (or returned to the pool) are ignored. Examples
        whose task disappeared go back to the pool, their answers retired (or, in the expert lane, get a new
        specialist task). Answers missing from a task the pull saw were deleted there: they are retired and
        their example settled again. Returns the number of new annotations.
        """
        with self._write() as (db, changed):
            added, touched = _insert_annotations(db, result.annotations, strict=False, lane=lane)
            if lane == EXPERT_LANE:
                _expert_skipped(db, {e for e, n in result.cancelled.items() if n} | set(result.skipped))
                db.executemany("UPDATE examples SET expert_task_id = NULL WHERE id = ? AND adjudication = "
                               "'pending'", [(e,) for e in result.removed])
            else:
                _mark_skipped(db, result.skipped)
                _retire(db, result.removed)
                _return_to_pool(db, result.removed)
                _count_skips(db, result.cancelled)
            touched |= _retire_missing(db, result.held, lane)
            changed.examples.update(touched, result.cancelled, result.skipped, result.removed)
            _settle(db, touched | set(result.cancelled) | set(result.skipped), settlement or Settlement())
            if result.cursor is not None:
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (cursor_key, result.cursor))
        return added

    def labels(self, purpose: str = "train") -> dict[str, str]:
        """Consensus labels (training ones by default, or purpose="eval"): example id -> label, in round then rank
        order."""
        return dict(self._state().labels.get(purpose, {}))

    def label_rounds(self, purpose: str = "train") -> dict[str, int]:
        """The round that picked each labeled example of a purpose: example id -> round."""
        state = self._state()
        return {e: state.examples[e][2] for e in state.labels.get(purpose, {})}

    def used_count(self, purpose: str | None = "train") -> int:
        """Examples of a purpose (None: any) sent to annotators (queued, labeled or skipped): what the budget
        counts."""
        state = self._state()
        return len(state.used) if purpose is None else state.used_by_purpose.get(purpose, 0)

    def round_progress(self, round_index: int) -> tuple[int, int]:
        """(answered, still in the round) for a round: answered = labeled or skipped."""
        row = self._db.execute("SELECT SUM(status IN ('labeled', 'skipped')), SUM(status <> 'unlabeled') "
                               "FROM examples WHERE round = ?", (round_index,)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def used_ids(self) -> set[str]:
        """Examples no longer in the pool (queued, labeled or skipped)."""
        return set(self._state().used)

    def annotations(self) -> list[dict[str, object]]:
        """Every stored annotation (the audit trail), oldest first."""
        return _rows(self._db.execute("SELECT * FROM annotations ORDER BY seq"))

    def examples(self, statuses: Sequence[str] = ("labeled",)) -> list[dict[str, object]]:
        """Stored examples with these statuses, every column, in round then rank order."""
        marks = ",".join("?" * len(statuses))
        return _rows(self._db.execute(f"SELECT * FROM examples WHERE status IN ({marks}) ORDER BY round, rank",
                                      tuple(statuses)))

    def current_answers(self, lane: str = ROUTINE) -> list[tuple[str, str, str, int, str]]:
        """Answers in force of examples in use: (example id, annotator, label, round, purpose), oldest first;
        one per annotator and example (their latest)."""
        return self._state().in_force(lane)

    def annotators(self, lane: str = ROUTINE) -> set[str]:
        """The annotators with an answer in force (those of `current_answers`)."""
        return set(self._state().annotators.get(lane, {}))

    def apply_consensus(self, labels: dict[str, str], method: str) -> int:
        """Set the training label of labeled examples (not those a specialist decided) and record the method.
        Returns how many labels changed."""
        with self._write() as (db, touched):
            touched.examples.update(labels)
            before = db.total_changes
            db.executemany("UPDATE examples SET label = ?, label_method = ? WHERE id = ? AND status = 'labeled' "
                           "AND adjudication IS NOT 'expert' AND (label IS NOT ? OR label_method IS NOT ?)",
                           [(label, method, e, label, method) for e, label in labels.items()])
            return db.total_changes - before

    def round_ambiguities(self, round_index: int) -> list[tuple[float | None]]:
        """Ambiguity of each example picked in a round, in rank order."""
        return self._db.execute("SELECT ambiguity FROM examples WHERE round = ? ORDER BY rank",
                                (round_index,)).fetchall()

    def record_routed(self, rows: Sequence[dict[str, object]]) -> int:
        """Store routing decisions (id, data, predicted, confidence, decision, hi, model); ids already routed
        are kept as they were. Returns how many are new."""
        now = utc_now()
        with self._write() as (db, _):
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO routed (id, data, predicted, confidence, decision, hi, model, "
                           "routed_at) VALUES (:id, :data, :predicted, :confidence, :decision, :hi, :model, :now)",
                           [{**row, "now": now} for row in rows])
            return db.total_changes - before

    def routed_unpushed(self) -> list[dict[str, object]]:
        """Review decisions whose task is not created yet, least confident first."""
        return _rows(self._db.execute("SELECT * FROM routed WHERE decision = 'review' AND task_id IS NULL "
                                      "ORDER BY confidence, id"))

    def routed_reviewed(self) -> list[dict[str, object]]:
        """Routed items a person labeled, every column, oldest first."""
        return _rows(self._db.execute("SELECT * FROM routed WHERE label IS NOT NULL ORDER BY labeled_at, id"))

    def mark_routed_pushed(self, task_ids: dict[str, str]) -> None:
        with self._write() as (db, _):
            db.executemany("UPDATE routed SET task_id = ? WHERE id = ?", [(str(t), e) for e, t in task_ids.items()])

    def routed_pending(self) -> dict[str, str]:
        """Review tasks waiting for a person: routed id -> task id."""
        return dict(self._db.execute("SELECT id, task_id FROM routed WHERE decision = 'review' AND task_id IS NOT "
                                     "NULL AND label IS NULL").fetchall())

    def routed_labels(self) -> list[tuple[str, str, str]]:
        """Reviewed routed items: (id, input data as JSON, the person's label), oldest first."""
        return self._db.execute("SELECT id, data, label FROM routed WHERE label IS NOT NULL "
                                "ORDER BY labeled_at, id").fetchall()

    def routed_counts(self, model: str) -> dict[str, int]:
        """Items routed with the model of an MLflow run, by decision (auto, review)."""
        return dict(self._db.execute("SELECT decision, COUNT(*) FROM routed WHERE model = ? GROUP BY decision",
                                     (model,)).fetchall())

    def partly_answered(self, round_index: int) -> int:
        """Queued examples of a round with some answers, but fewer (answers + skips) than they ask for."""
        return self._db.execute(
            "SELECT COUNT(*) FROM examples e WHERE e.round = ? AND e.status = 'queued' AND e.adjudication IS NULL "
            "AND (SELECT COUNT(DISTINCT a.annotator) FROM annotations a WHERE a.example_id = e.id AND a.round = "
            "e.round AND a.lane = 'routine' AND a.superseded_by IS NULL AND a.deleted_at IS NULL AND a.value <> '') "
            "BETWEEN 1 AND e.required - e.skips - 1",
            (round_index,)).fetchone()[0]

    def adjudication_counts(self) -> dict[str, int]:
        """Examples sent to specialists, by outcome: pending, expert, expert_skipped."""
        return dict(self._db.execute("SELECT adjudication, COUNT(*) FROM examples WHERE adjudication IS NOT NULL "
                                     "GROUP BY adjudication").fetchall())

    def status_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM examples GROUP BY status").fetchall())

    # -- rounds -----------------------------------------------------------------------------------

    def rounds(self) -> list[RoundRecord]:
        """Every round, in order (each with its own copy of its metrics)."""
        return [_copy(r) for r in self._state().rounds.values()]

    def round_count(self) -> int:
        return len(self._state().rounds)

    def last_round(self) -> RoundRecord | None:
        rounds = self._state().rounds
        return _copy(rounds[next(reversed(rounds))]) if rounds else None

    def open_round(self) -> RoundRecord | None:
        """The latest round if it is not fully logged yet (the one to resume), else None."""
        last = self.last_round()
        return last if last is not None and last.status != "logged" else None

    def finish_round(self, round_index: int, n_labels: int, metrics: dict[str, float]) -> None:
        """Store a round's evaluation (status evaluated), before it is sent to tracking."""
        with self._write() as (db, touched):
            touched.rounds.add(round_index)
            db.execute("UPDATE rounds SET status = 'evaluated', n_labels = ?, metrics = ?, finished_at = ? "
                       "WHERE round = ?", (n_labels, json.dumps(metrics), utc_now(), round_index))

    def mark_logged(self, round_index: int) -> None:
        with self._write() as (db, touched):
            touched.rounds.add(round_index)
            db.execute("UPDATE rounds SET status = 'logged' WHERE round = ?", (round_index,))


@dataclass
class _Touched:
    """What a write may have changed: examples (their row or their answers) and rounds."""

    examples: set[str] = field(default_factory=set)
    rounds: set[int] = field(default_factory=set)


EXAMPLE_COLUMNS = "id, status, purpose, round, rank, label, task_id"
ANSWER_QUERY = (
    "SELECT a.example_id, a.annotator, a.value, e.round, e.purpose, a.lane, a.created_at, a.seq FROM annotations a "
    "JOIN examples e ON e.id = a.example_id AND e.round = a.round WHERE a.superseded_by IS NULL AND "
    "a.deleted_at IS NULL AND a.value <> '' AND e.status <> 'unlabeled'")
ROUND_QUERY = "SELECT round, strategy, status, batch_size, model_version, n_labels, metrics FROM rounds"


class _Mirror:
    """What the loop reads every round (labels, examples in use, closed tasks, answers in force, rounds), held in
    memory: built by one scan of the ledger, then patched after each of the ledger's own writes by re-reading only
    the examples and rounds the write touched. The ledger stays the single source of truth: `Ledger._state`
    drops the mirror whenever the database changed in a way it was not patched for. `scan` and a patched mirror
    give the same reads (tests/test_round_bookkeeping.py)."""

    def __init__(self) -> None:
        self.examples: dict[str, tuple[str, str, int, int, str | None, str | None]] = {}  # id -> EXAMPLE_COLUMNS
        self.labels: dict[str, dict[str, str]] = {}  # purpose -> id -> label, in (round, rank) order
        self.used: set[str] = set()
        self.used_by_purpose: Counter[str] = Counter()
        self.closed: dict[str, str] = {}
        # lane -> example id -> [(created_at, seq), (example id, annotator, label, round, purpose)] in force
        self.answers: dict[str, dict[str, list[tuple[tuple[str, int], tuple[str, str, str, int, str]]]]] = {}
        self.annotators: dict[str, Counter[str]] = {}  # lane -> annotator -> answers in force
        self._in_force: dict[str, list[tuple[str, str, str, int, str]]] = {}  # lane -> sorted answers (memo)
        self.rounds: dict[int, RoundRecord] = {}

    @classmethod
    def scan(cls, db: sqlite3.Connection) -> _Mirror:
        mirror = cls()
        rows = db.execute(f"SELECT {EXAMPLE_COLUMNS} FROM examples ORDER BY round, rank").fetchall()
        mirror._set_examples({row[0]: row[1:] for row in rows}, set())
        mirror._set_answers(set(), db.execute(ANSWER_QUERY).fetchall())
        mirror.rounds = {row[0]: _round(row) for row in db.execute(ROUND_QUERY + " ORDER BY round")}
        return mirror

    def patch(self, db: sqlite3.Connection, touched: _Touched) -> None:
        """Re-read the touched examples (their row and answers) and rounds."""
        if touched.examples:
            ids = sorted(touched.examples)
            rows = _in_chunks(db, f"SELECT {EXAMPLE_COLUMNS} FROM examples WHERE id IN ({{}})", ids)
            self._set_examples({row[0]: row[1:] for row in rows}, set(ids))
            self._set_answers(set(ids), _in_chunks(db, ANSWER_QUERY + " AND a.example_id IN ({})", ids))
        if touched.rounds:
            for row in _in_chunks(db, ROUND_QUERY + " WHERE round IN ({})", sorted(touched.rounds)):
                self.rounds[row[0]] = _round(row)
            if list(self.rounds) != sorted(self.rounds):
                self.rounds = dict(sorted(self.rounds.items()))

    def _set_examples(self, rows: dict[str, tuple], ids: set[str]) -> None:
        """Replace the examples `ids` (and add those of `rows`) by `rows` (an id missing there is gone)."""
        appended: dict[str, list[str]] = {}
        for example_id in ids | set(rows):
            old, new = self.examples.get(example_id), rows.get(example_id)
            if old is not None:
                if old[0] != "unlabeled":
                    self.used.discard(example_id)
                    self.used_by_purpose[old[1]] -= 1
                self.closed.pop(example_id, None)
                if old[0] == "labeled" and (new is None or new[0] != "labeled" or new[1:4] != old[1:4]):
                    del self.labels[old[1]][example_id]
            if new is None:
                self.examples.pop(example_id, None)
                continue
            self.examples[example_id] = new
            status, purpose = new[0], new[1]
            if status != "unlabeled":
                self.used.add(example_id)
                self.used_by_purpose[purpose] += 1
            if status in ("labeled", "skipped") and new[5] is not None:
                self.closed[example_id] = new[5]
            if status == "labeled":
                labels = self.labels.setdefault(purpose, {})
                if example_id in labels:
                    labels[example_id] = new[4]  # same pick, new label: it keeps its place
                else:
                    appended.setdefault(purpose, []).append(example_id)
        for purpose, added in appended.items():
            labels = self.labels[purpose]
            added.sort(key=lambda e: self.examples[e][2:4])
            last = next(reversed(labels), None)
            if last is None or self.examples[last][2:4] < self.examples[added[0]][2:4]:
                labels.update((e, self.examples[e][4]) for e in added)  # the usual case: a new round's labels
            else:
                merged = sorted([*labels, *added], key=lambda e: self.examples[e][2:4])
                self.labels[purpose] = {e: self.examples[e][4] for e in merged}

    def _set_answers(self, ids: set[str], rows: list[tuple]) -> None:
        """Replace the answers in force of the examples `ids` (every example when building) by `rows`."""
        for lane, by_example in self.answers.items():
            for example_id in ids:
                for _, row in by_example.pop(example_id, ()):
                    self.annotators[lane][row[1]] -= 1
                    if not self.annotators[lane][row[1]]:
                        del self.annotators[lane][row[1]]
        latest: dict[tuple[str, str, str], tuple[tuple[str, int], tuple[str, str, str, int, str]]] = {}
        for *row, lane, created_at, seq in rows:  # one per annotator and example: the latest (created_at, seq)
            key = (lane, row[0], row[1])
            if key not in latest or latest[key][0] < (created_at, seq):
                latest[key] = ((created_at, seq), tuple(row))
        for (lane, example_id, annotator), entry in latest.items():
            self.answers.setdefault(lane, {}).setdefault(example_id, []).append(entry)
            self.annotators.setdefault(lane, Counter())[annotator] += 1
        self._in_force.clear()

    def in_force(self, lane: str) -> list[tuple[str, str, str, int, str]]:
        """Answers in force of one lane, in the order of `_in_force` (by creation time, then sequence)."""
        if lane not in self._in_force:
            entries = [entry for answers in self.answers.get(lane, {}).values() for entry in answers]
            entries.sort(key=lambda entry: entry[0])
            self._in_force[lane] = [row for _, row in entries]
        return list(self._in_force[lane])


def _round(row: tuple) -> RoundRecord:
    return RoundRecord(*row[:6], metrics=json.loads(row[6]) if row[6] else {})


def _copy(record: RoundRecord) -> RoundRecord:
    """A round record with its own metrics dict (the mirror's stays as stored)."""
    return RoundRecord(record.round, record.strategy, record.status, record.batch_size, record.model_version,
                       record.n_labels, dict(record.metrics))


def _in_chunks(db: sqlite3.Connection, query: str, values: Sequence[object], size: int = 500) -> list[tuple]:
    """Rows of a query whose `IN ({})` takes `values`, a chunk at a time (SQLite limits the parameters)."""
    rows: list[tuple] = []
    for start in range(0, len(values), size):
        chunk = values[start:start + size]
        rows += db.execute(query.format(",".join("?" * len(chunk))), tuple(chunk)).fetchall()
    return rows


def _rows(cursor: sqlite3.Cursor) -> list[dict[str, object]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _add_columns(db: sqlite3.Connection) -> None:
    for table, column, definition in ADDED_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    db.executescript(INDEXES)


def _insert_annotations(db: sqlite3.Connection, annotations: Iterable[Annotation], strict: bool,
                        lane: str = ROUTINE) -> tuple[int, set[str]]:
    """Store new annotations; returns how many were new and the examples they answer."""
    now = utc_now()
    added = 0
    touched: set[str] = set()
    for a in annotations:
        context = db.execute("SELECT round, model_version, predicted_label, confidence FROM examples "
                             "WHERE id = ? AND status <> 'unlabeled'", (a.example_id,)).fetchone()
        if context is None:
            reviewed = _record_review(db, a)
            if reviewed is not None:
                added += int(reviewed)
                continue
            if strict:
                raise ValueError(f"annotation for unknown example {a.example_id!r} (never picked)")
            log.warning("ignoring an annotation of %r: this run did not ask for it", a.example_id)
            continue
        if _already_recorded(db, a, lane):
            continue
        cursor = db.execute(
            "INSERT INTO annotations (example_id, value, annotator, created_at, updated_at, lead_time, "
            "external_id, round, model_version, predicted_label, confidence, recorded_at, lane) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a.example_id, a.label, a.annotator, a.created_at, a.updated_at, a.lead_time, a.external_id,
             *context, now, lane))
        db.execute("UPDATE annotations SET superseded_by = ? WHERE example_id = ? AND seq <> ? AND "
                   "superseded_by IS NULL AND lane = ? AND ((external_id IS NOT NULL AND external_id = ?) OR "
                   "(external_id IS NULL AND ? IS NULL AND annotator = ?))",
                   (cursor.lastrowid, a.example_id, cursor.lastrowid, lane, a.external_id, a.external_id,
                    a.annotator))
        added += 1
        touched.add(a.example_id)
    return added, touched


def _settle(db: sqlite3.Connection, example_ids: Iterable[str], settlement: Settlement) -> None:
    """Decide what each example's answers make of it: still waiting, skipped, escalated, or labeled.

    A specialist's answer wins. Otherwise an example is complete once `required` annotators answered or
    skipped it; then its label is the majority of the answers (Dawid-Skene, when configured, is applied by
    the loop before training), unless they split below the escalation share: then it waits for a specialist.
    """
    now = utc_now()
    for example_id in sorted(example_ids):
        row = db.execute("SELECT status, required, skips, adjudication FROM examples WHERE id = ?",
                         (example_id,)).fetchone()
        if row is None or row[0] == "unlabeled":
            continue
        status, required, skips, adjudication = row
        answers = _in_force(db, ROUTINE, example_id)
        experts = _in_force(db, EXPERT_LANE, example_id)
        vote = majority([value for _, _, value, _, _ in answers]) if answers else None
        share = None if vote is None else vote.share
        if experts:  # the latest specialist answer
            db.execute("UPDATE examples SET status = 'labeled', label = ?, label_method = ?, agreement = ?, "
                       "adjudication = 'expert', updated_at = ? WHERE id = ?",
                       (experts[-1][2], EXPERT, share, now, example_id))
            continue
        if adjudication == "pending":
            continue  # waiting for the specialist
        if adjudication == "expert":  # the specialist's answer was deleted: wait for a specialist again
            db.execute("UPDATE examples SET status = 'queued', label = NULL, label_method = NULL, adjudication = "
                       "'pending', updated_at = ? WHERE id = ?", (now, example_id))
            continue
        if len(answers) + skips < required:
            if status == "labeled":  # answers were deleted: wait again, on the same task
                _wait_again(db, example_id)
            continue  # waiting for more annotators
        if vote is None:
            if status == "queued":
                (_return_to_pool if settlement.repush_skipped else _mark_skipped)(db, [example_id])
            continue
        escalate = settlement.escalate_below
        if status == "queued" and adjudication is None and escalate is not None and vote.answers >= 2 \
                and vote.share < escalate:
            db.execute("UPDATE examples SET adjudication = 'pending', escalated_at = ?, agreement = ?, "
                       "updated_at = ? WHERE id = ?", (now, share, now, example_id))
            continue
        db.execute("UPDATE examples SET status = 'labeled', label = ?, label_method = ?, agreement = ?, "
                   "updated_at = ? WHERE id = ?",
                   (vote.label, SINGLE if vote.answers == 1 else MAJORITY, share, now, example_id))


def _in_force(db: sqlite3.Connection, lane: str, example_id: str | None = None
              ) -> list[tuple[str, str, str, int, str]]:
    """Answers in force (not superseded, not deleted, not empty) of one lane, to examples in use, for one
    example or all:
    (example id, annotator, label, round, purpose), one per annotator and example (their latest), in the
    order of those answers. Only answers to an example's current pick count (an example picked again after
    its task was deleted starts afresh; the earlier answers stay in the trail). A tie in the majority goes to
    the answer created first."""
    one = " AND a.example_id = ?" if example_id is not None else ""
    rows = db.execute(
        "SELECT a.example_id, a.annotator, a.value, e.round, e.purpose FROM annotations a JOIN examples e ON "
        "e.id = a.example_id AND e.round = a.round WHERE a.lane = ? AND a.superseded_by IS NULL AND "
        f"a.deleted_at IS NULL AND a.value <> '' AND e.status <> 'unlabeled'{one} ORDER BY a.created_at, a.seq",
        (lane,) if example_id is None else (lane, example_id)).fetchall()
    latest: dict[tuple[str, str], tuple[str, str, str, int, str]] = {}
    for row in rows:
        latest.pop(row[:2], None)
        latest[row[:2]] = row
    return list(latest.values())


def _count_skips(db: sqlite3.Connection, cancelled: dict[str, int]) -> None:
    """Annotators who skipped an example's task and have not answered it since (the count can go down)."""
    db.executemany("UPDATE examples SET skips = ? WHERE id = ? AND status = 'queued'",
                   [(n, e) for e, n in cancelled.items()])


def _expert_skipped(db: sqlite3.Connection, example_ids: Iterable[str]) -> None:
    """A specialist skipped: the example falls back to the consensus of its answers."""
    db.executemany("UPDATE examples SET adjudication = 'expert_skipped' WHERE id = ? AND adjudication = 'pending'",
                   [(e,) for e in example_ids])


def _record_review(db: sqlite3.Connection, a: Annotation) -> bool | None:
    """A person's answer to a routed review task (the latest answer wins): True if it changed the label,
    False if it was known already, None if `a` does not answer a routed item."""
    row = db.execute("SELECT label FROM routed WHERE id = ?", (a.example_id,)).fetchone()
    if row is None:
        return None
    if row[0] == a.label or a.label == EMPTY:  # a review without a choice decides nothing
        return False
    db.execute("UPDATE routed SET label = ?, annotator = ?, lead_time = ?, labeled_at = ? WHERE id = ?",
               (a.label, a.annotator, a.lead_time, a.updated_at or a.created_at, a.example_id))
    return True


def _mark_skipped(db: sqlite3.Connection, example_ids: Iterable[str]) -> None:
    db.executemany("UPDATE examples SET status = 'skipped', updated_at = ? WHERE id = ? AND status = 'queued'",
                   [(utc_now(), e) for e in example_ids])


def _return_to_pool(db: sqlite3.Connection, example_ids: Iterable[str]) -> None:
    db.executemany("UPDATE examples SET status = 'unlabeled', task_id = NULL, label = NULL, label_method = NULL, "
                   "agreement = NULL, updated_at = ? WHERE id = ? AND status IN ('queued', 'skipped', 'labeled')",
                   [(utc_now(), e) for e in example_ids])


def _wait_again(db: sqlite3.Connection, example_id: str) -> None:
    """A labeled example that lost answers waits again for its task (and, if it was split, for the split to be
    judged again)."""
    db.execute("UPDATE examples SET status = 'queued', label = NULL, label_method = NULL, agreement = NULL, "
               "adjudication = NULL, escalated_at = NULL, expert_task_id = NULL, updated_at = ? WHERE id = ? AND "
               "status = 'labeled'", (utc_now(), example_id))


def _retire(db: sqlite3.Connection, example_ids: Iterable[str]) -> None:
    """Mark every answer in force to the current pick of these examples deleted (their task is gone)."""
    db.executemany("UPDATE annotations SET deleted_at = ? WHERE example_id = ? AND deleted_at IS NULL AND "
                   "superseded_by IS NULL AND round = (SELECT round FROM examples WHERE id = ? AND "
                   "status <> 'unlabeled')", [(utc_now(), e, e) for e in example_ids])


def _retire_missing(db: sqlite3.Connection, held: Mapping[str, frozenset[str]], lane: str) -> set[str]:
    """Retire answers pulled from a task that the task no longer holds (deleted in the annotation tool).

    `held` maps task id -> external ids of the answers the task holds now; only an example's current task
    (routine or specialist) counts. Returns the examples that lost an answer."""
    column = "task_id" if lane == ROUTINE else "expert_task_id"
    now = utc_now()
    touched: set[str] = set()
    for task_id, present in held.items():
        rows = db.execute(
            "SELECT a.seq, a.external_id, e.id FROM annotations a JOIN examples e ON e.id = a.example_id AND "
            f"e.round = a.round WHERE e.{column} = ? AND e.status <> 'unlabeled' AND a.lane = ? AND "
            "a.superseded_by IS NULL AND a.deleted_at IS NULL AND a.external_id IS NOT NULL",
            (str(task_id), lane)).fetchall()
        gone = [(seq, example) for seq, external, example in rows if external not in present]
        if gone:
            db.executemany("UPDATE annotations SET deleted_at = ? WHERE seq = ?", [(now, seq) for seq, _ in gone])
            touched.update(example for _, example in gone)
    return touched


def _fetch_taken(db: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    taken: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        taken += [r[0] for r in db.execute(f"SELECT id FROM examples WHERE status <> 'unlabeled' AND id IN ({marks})",
                                           chunk)]
    return taken


def _already_recorded(db: sqlite3.Connection, a: Annotation, lane: str) -> bool:
    """Whether this answer is the one in force already (an answer changed back to an older value is new)."""
    row = db.execute("SELECT 1 FROM annotations WHERE example_id = ? AND annotator = ? AND external_id IS ? AND "
                     "updated_at IS ? AND value = ? AND lane = ? AND superseded_by IS NULL AND deleted_at IS NULL",
                     (a.example_id, a.annotator, a.external_id, a.updated_at, a.label, lane)).fetchone()
    return row is not None


def _shown(value: str | None) -> str:
    """A stored setting for a message: its value, a file's content hash, or its default when it was left out."""
    if value is None:
        return "(the default)"
    return f"file content {value}" if value.startswith("sha256:") else value


def _check_readable(connection: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError if an existing ledger is not a whole SQLite database (truncated, overwritten)."""
    result = connection.execute("PRAGMA quick_check(1)").fetchone()
    if result is None or result[0] != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed: {result[0] if result else 'no answer'}")


def _ledger_error(path: Path, error: sqlite3.Error | OSError) -> AlLoopError | None:
    """The AlLoopError for an error of the ledger file: damaged, disk full or not writable; None for any other error
    (e.g. a lock timeout or a programming error, re-raised as it is)."""
    if isinstance(error, OSError):
        return storage_error(error)
    code = getattr(error, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return StorageError(f"the disk holding the ledger {path} is full ({error}). Free some space and re-run the "
                            "same command: each ledger write is all-or-nothing, so nothing recorded is lost")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return StorageError(f"cannot write the ledger {path} ({error}). Make it and its folder writable, or set a "
                            "new output_dir")
    damaged = code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or (
        code is None and isinstance(error, sqlite3.DatabaseError) and "malformed" in str(error))
    if damaged:
        return BrokenStateError(
            f"the ledger {path} is damaged ({error}): it is not a whole SQLite database (truncated or overwritten). "
            "It holds this run's labels: restore it from a backup if you have one. Otherwise move it aside "
            f"(mv {path} {path}.broken) and re-run to start this run again, or set a new output_dir")
    return None
