"""Per-round bookkeeping is O(batch): the ledger's in-memory mirror (labels, examples in use, closed tasks, answers
in force, rounds) equals a full rescan after any sequence of writes, and a round of the loop neither scans the
examples or annotations tables nor runs more statements as the labels grow."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from al_loop.annotators.base import Annotation, PullResult
from al_loop.ledger import EXPERT_LANE, ROUTINE, Ledger, Pick, RoundRecord, Settlement

IDS = [f"x{i}" for i in range(12)]
ANNOTATORS = ["ann", "bob", "cy"]
LABELS = ["cat", "dog", "owl"]


def rescan(db: sqlite3.Connection) -> dict[str, object]:
    """What the mirror answers, read from the tables the way the ledger read them before the mirror existed."""
    out: dict[str, object] = {}
    for purpose in ("train", "eval"):
        out[f"labels/{purpose}"] = db.execute("SELECT id, label FROM examples WHERE status = 'labeled' AND "
                                              "purpose = ? ORDER BY round, rank", (purpose,)).fetchall()
        out[f"label_rounds/{purpose}"] = dict(db.execute("SELECT id, round FROM examples WHERE status = 'labeled' "
                                                         "AND purpose = ?", (purpose,)).fetchall())
        out[f"used_count/{purpose}"] = db.execute("SELECT COUNT(*) FROM examples WHERE status <> 'unlabeled' AND "
                                                  "purpose = ?", (purpose,)).fetchone()[0]
    out["used_count/all"] = db.execute("SELECT COUNT(*) FROM examples WHERE status <> 'unlabeled'").fetchone()[0]
    out["used_ids"] = {r[0] for r in db.execute("SELECT id FROM examples WHERE status <> 'unlabeled'")}
    out["closed"] = dict(db.execute("SELECT id, task_id FROM examples WHERE status IN ('labeled', 'skipped') AND "
                                    "task_id IS NOT NULL").fetchall())
    for lane in (ROUTINE, EXPERT_LANE):
        rows = db.execute(
            "SELECT a.example_id, a.annotator, a.value, e.round, e.purpose FROM annotations a JOIN examples e ON "
            "e.id = a.example_id AND e.round = a.round WHERE a.lane = ? AND a.superseded_by IS NULL AND "
            "a.deleted_at IS NULL AND a.value <> '' AND e.status <> 'unlabeled' ORDER BY a.created_at, a.seq",
            (lane,)).fetchall()
        latest: dict[tuple[str, str], tuple] = {}
        for row in rows:
            latest.pop(row[:2], None)
            latest[row[:2]] = row
        out[f"answers/{lane}"] = list(latest.values())
        out[f"annotators/{lane}"] = {row[1] for row in latest.values()}
    out["rounds"] = [RoundRecord(*row[:6], metrics=json.loads(row[6]) if row[6] else {}) for row in db.execute(
        "SELECT round, strategy, status, batch_size, model_version, n_labels, metrics FROM rounds ORDER BY round")]
    return out


def mirrored(ledger: Ledger) -> dict[str, object]:
    """The same reads through the ledger's API (served by the mirror)."""
    out: dict[str, object] = {}
    for purpose in ("train", "eval"):
        out[f"labels/{purpose}"] = list(ledger.labels(purpose).items())
        out[f"label_rounds/{purpose}"] = ledger.label_rounds(purpose)
        out[f"used_count/{purpose}"] = ledger.used_count(purpose)
    out["used_count/all"] = ledger.used_count(None)
    out["used_ids"] = ledger.used_ids()
    out["closed"] = ledger.closed_tasks()
    for lane in (ROUTINE, EXPERT_LANE):
        out[f"answers/{lane}"] = ledger.current_answers(lane)
        out[f"annotators/{lane}"] = ledger.annotators(lane)
    out["rounds"] = ledger.rounds()
    return out


class MirrorMachine(RuleBasedStateMachine):
    """Random rounds, pushes, answers (two lanes, corrected, changed back, out of time order), pulls with skips,
    cancellations, removed tasks and deleted answers, consensus relabels, round results, and raw writes."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(__import__("tempfile").mkdtemp())
        self._context = Ledger.open(self.folder / "ledger.sqlite")
        self.ledger = self._context.__enter__()
        self.round = 0
        self.clock = 0
        self.mirror = None  # the mirror object: kept (patched) across the ledger's own writes
        self.rule = Settlement(escalate_below=0.6, repush_skipped=False)

    def teardown(self) -> None:
        self._context.__exit__(None, None, None)

    def _created(self, data) -> str:
        self.clock += 1
        late = data.draw(st.integers(0, 3))  # answers may arrive out of creation order
        return f"2026-01-01T00:00:{max(self.clock - late, 0):02d}.000+00:00"

    @rule(data=st.data(), purpose=st.sampled_from(["train", "train", "eval"]), required=st.integers(1, 3))
    def queue(self, data, purpose: str, required: int) -> None:
        free = sorted(set(IDS) - self.ledger.used_ids())
        if not free:
            return
        ids = data.draw(st.lists(st.sampled_from(free), min_size=1, max_size=4, unique=True))
        self.ledger.queue_round(self.round, "margin", f"v{self.round}",
                                [Pick(e, i + 1, 0.5, "cat", 0.6, required) for i, e in enumerate(ids)], purpose)
        self.round += 1

    @precondition(lambda self: self.round)
    @rule(data=st.data())
    def push(self, data) -> None:
        waiting = [row[0] for row in self.ledger.unpushed()]
        if waiting:
            chosen = data.draw(st.lists(st.sampled_from(waiting), max_size=len(waiting), unique=True))
            self.ledger.mark_pushed({e: f"t-{e}-{self.round}" for e in chosen})

    @precondition(lambda self: self.round)
    @rule(data=st.data(), annotator=st.sampled_from(ANNOTATORS), label=st.sampled_from([*LABELS, ""]),
          lane=st.sampled_from([ROUTINE, ROUTINE, EXPERT_LANE]), through_pull=st.booleans())
    def answer(self, data, annotator: str, label: str, lane: str, through_pull: bool) -> None:
        example = data.draw(st.sampled_from(IDS))
        version = data.draw(st.integers(0, 2))  # the same answer again, corrected, or changed back
        answer = Annotation(example_id=example, label=label, annotator=annotator, created_at=self._created(data),
                            updated_at=f"u{version}", lead_time=1.0, external_id=f"{example}-{annotator}-{lane}")
        if through_pull or example not in self.ledger.used_ids():
            self.ledger.record_pull(PullResult(annotations=[answer]), lane=lane, settlement=self.rule)
        else:
            self.ledger.record_annotations([answer], lane=lane, settlement=self.rule)

    @precondition(lambda self: self.round)
    @rule(data=st.data(), lane=st.sampled_from([ROUTINE, EXPERT_LANE]))
    def pull_changes(self, data, lane: str) -> None:
        """Skips, cancellations, removed tasks, and tasks that lost answers (deleted in the tool)."""
        some = st.lists(st.sampled_from(IDS), max_size=3, unique=True)
        skipped, removed = data.draw(some), data.draw(some)
        cancelled = {e: data.draw(st.integers(0, 2)) for e in data.draw(some)}
        tasks = sorted(set(self.ledger.closed_tasks().values()) | {t for t in self.ledger.pending().values() if t})
        held = {t: frozenset() for t in data.draw(st.lists(st.sampled_from(tasks), max_size=2, unique=True))} \
            if tasks else {}
        self.ledger.record_pull(PullResult(skipped=skipped, removed=removed, cancelled=cancelled, held=held),
                                lane=lane, settlement=self.rule)

    @precondition(lambda self: self.round)
    @rule(data=st.data())
    def skip_or_escalate(self, data) -> None:
        self.ledger.record_skipped(data.draw(st.lists(st.sampled_from(IDS), max_size=2, unique=True)))
        waiting = [row[0] for row in self.ledger.escalations_unpushed()]
        if waiting:
            self.ledger.mark_escalations_pushed({e: f"x-{e}" for e in waiting})

    @precondition(lambda self: self.round)
    @rule(data=st.data())
    def relabel(self, data) -> None:
        labeled = sorted({**self.ledger.labels(), **self.ledger.labels("eval")})
        if labeled:
            chosen = data.draw(st.lists(st.sampled_from(labeled), max_size=3, unique=True))
            self.ledger.apply_consensus({e: data.draw(st.sampled_from(LABELS)) for e in chosen}, "dawid_skene")

    @precondition(lambda self: self.round)
    @rule(data=st.data(), accuracy=st.floats(0, 1))
    def close_round(self, data, accuracy: float) -> None:
        round_index = data.draw(st.integers(0, self.round - 1))
        self.ledger.finish_round(round_index, len(self.ledger.labels()), {"accuracy": accuracy})
        if data.draw(st.booleans()):
            self.ledger.mark_logged(round_index)
        self.ledger.set_meta(f"note/{round_index}", "x")

    @precondition(lambda self: self.round)
    @rule(data=st.data())
    def raw_write(self, data) -> None:
        """A write that bypasses the ledger's methods: the mirror must notice and rebuild."""
        example = data.draw(st.sampled_from(IDS))
        self.ledger._db.execute("UPDATE examples SET status = 'labeled', label = 'owl' WHERE id = ?", (example,))
        self.mirror = None

    @rule()
    def another_connection(self) -> None:
        """A write of another connection (as a crash-recovery tool would make): seen through data_version."""
        with sqlite3.connect(self.folder / "ledger.sqlite") as other:
            other.execute("UPDATE rounds SET strategy = 'edited' WHERE round = 0")
        self.mirror = None

    @invariant()
    def the_mirror_equals_a_rescan(self) -> None:
        assert mirrored(self.ledger) == rescan(self.ledger._db)
        if self.mirror is None:
            self.mirror = self.ledger._mirror
        assert self.ledger._mirror is self.mirror, "the ledger's own writes patch the mirror, not rebuild it"


MirrorMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestMirrorMachine = MirrorMachine.TestCase


def test_a_read_only_view_sees_the_writers_commits(tmp_path: Path):
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as writer, Ledger.read_only(path) as reader:
        writer.queue_round(0, "margin", "v0", [Pick("a", 1, None, None, None), Pick("b", 2, None, None, None)])
        assert reader.used_ids() == {"a", "b"} and reader.labels() == {}
        writer.record_annotations([Annotation("a", "cat", "ann", "2026-01-01T00:00:00Z")])
        assert reader.labels() == {"a": "cat"}
        assert reader.rounds()[0].status == "queued"
        writer.finish_round(0, 1, {"accuracy": 0.5})
        assert reader.rounds()[0].metrics == {"accuracy": 0.5}


def test_round_records_are_copies(tmp_path: Path):
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.queue_round(0, "margin", "v0", [Pick("a", 1, None, None, None)])
        ledger.finish_round(0, 1, {"accuracy": 0.5})
        ledger.rounds()[0].metrics["accuracy"] = 0.0
        assert ledger.rounds()[0].metrics == {"accuracy": 0.5}
        assert ledger.last_round() == ledger.open_round() == ledger.rounds()[-1]


# -- a loop's rounds: no scans, and as many statements late as early --------------------------------------------

FULL_SCAN = re.compile(r"\bSCAN (examples|annotations|e|a|b)\b")


def test_a_rounds_statements_neither_scan_nor_grow(write_config, monkeypatch: pytest.MonkeyPatch):
    """Every statement a round runs on the ledger searches an index (no full scan of examples or annotations), and
    a late round runs as many statements as an early one: the per-round cost does not grow with the labels."""
    from al_loop.config import load_config
    from al_loop.loop import run_loop

    traced: list[str] = []
    original = Ledger.__init__

    def tracing(self: Ledger, connection: sqlite3.Connection, path: Path) -> None:
        original(self, connection, path)
        connection.set_trace_callback(traced.append)

    monkeypatch.setattr(Ledger, "__init__", tracing)
    per_round: list[list[str]] = []

    def on_round(_record: object) -> None:
        per_round.append(list(traced))
        traced.clear()

    config = load_config(write_config(loop={"strategy": "margin", "batch_size": 10, "initial_size": 10,
                                            "budget": 110}, costs={"per_accuracy_point": 5.0}))
    result = run_loop(config, on_round=on_round)
    assert len(per_round) == 11
    counts = [len(statements) for statements in per_round]
    assert counts[3] == counts[-1], f"statements per round grew with the labels: {counts}"
    with sqlite3.connect(result.run_dir / "ledger.sqlite") as db:
        for statement in {s for round_statements in per_round[2:] for s in round_statements}:
            if not re.match(r"\s*(SELECT|UPDATE|INSERT|DELETE)", statement, re.IGNORECASE):
                continue
            plan = " / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement))
            assert not FULL_SCAN.search(plan), f"a round scans a table: {statement!r}: {plan}"


def test_reads_between_writes_run_no_query_but_the_change_check(tmp_path: Path):
    """Once built, the mirror answers the loop's reads without reading the tables again (one PRAGMA each)."""
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.queue_round(0, "margin", "v0", [Pick(f"x{i}", i + 1, None, None, None) for i in range(50)])
        ledger.record_annotations([Annotation(f"x{i}", "cat", "ann", "2026-01-01T00:00:00Z") for i in range(50)])
        ledger.labels()
        traced: list[str] = []
        ledger._db.set_trace_callback(traced.append)
        for _ in range(3):
            ledger.labels(), ledger.labels("eval"), ledger.used_ids(), ledger.used_count(), ledger.closed_tasks()
            ledger.current_answers(), ledger.annotators(), ledger.rounds(), ledger.open_round(), ledger.label_rounds()
        assert set(traced) == {"PRAGMA data_version"}
        traced.clear()
        ledger.record_annotations([Annotation("x0", "dog", "bob", "2026-01-01T00:00:01Z")])
        patch = [s for s in traced if s.startswith("SELECT") and "FROM examples" in s and "IN (" in s]
        assert patch and all("'x0'" in s for s in patch), "a write re-reads only the examples it touched"
