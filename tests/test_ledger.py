"""The ledger: statuses, annotations (idempotent, superseded, majority), rollback, resume, lock, rounds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from al_loop.annotators.base import Annotation
from al_loop.errors import LedgerBusyError, LedgerMismatchError
from al_loop.ledger import Ledger, Pick, Settlement


def picks(*ids: str) -> list[Pick]:
    return [Pick(example_id=e, rank=i, ambiguity=0.9 - 0.1 * i, predicted_label="cat", confidence=0.6)
            for i, e in enumerate(ids)]


def ann(example_id: str, label: str, annotator: str = "alice", external_id: str | None = None,
        updated_at: str | None = None, created_at: str = "2026-01-01T00:00:00.000+00:00") -> Annotation:
    return Annotation(example_id=example_id, label=label, annotator=annotator, created_at=created_at,
                      updated_at=updated_at, lead_time=1.5, external_id=external_id)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "ledger.sqlite"


@pytest.fixture
def ledger(path: Path):
    with Ledger.open(path) as opened:
        yield opened


# -- queue, push, pending ---------------------------------------------------------------------------


def test_queue_round_then_unpushed_pending_and_mark_pushed(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b", "c"))
    assert ledger.unpushed() == [("a", 0, 0), ("b", 0, 1), ("c", 0, 2)]
    assert ledger.pending() == {"a": None, "b": None, "c": None}
    assert ledger.status_counts() == {"queued": 3}
    assert ledger.used_ids() == {"a", "b", "c"}

    ledger.mark_pushed({"a": "task-1", "c": 3})
    assert ledger.unpushed() == [("b", 0, 1)]
    assert ledger.pending() == {"a": "task-1", "b": None, "c": "3"}

    pick = ledger.pick_of("b")
    assert pick == Pick(example_id="b", rank=1, ambiguity=pytest.approx(0.8), predicted_label="cat",
                        confidence=pytest.approx(0.6))
    assert [r[0] for r in ledger.round_ambiguities(0)] == pytest.approx([0.9, 0.8, 0.7])


def test_unpushed_orders_by_round_then_rank(ledger: Ledger):
    ledger.queue_round(0, "random", None, [Pick("z", 1, None, None, None), Pick("y", 0, None, None, None)])
    ledger.queue_round(1, "margin", "v1", [Pick("a", 0, 0.5, "dog", 0.5)])
    assert ledger.unpushed() == [("y", 0, 0), ("z", 0, 1), ("a", 1, 0)]


def test_mark_pushed_ignores_examples_no_longer_queued(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    ledger.record_annotations([ann("a", "cat")])
    ledger.mark_pushed({"a": "task-a", "b": "task-b"})
    assert ledger.pending() == {"b": "task-b"}
    assert ledger.unpushed() == []
    # the labeled example keeps no task id from the late push (read-only peek at the table)
    assert ledger._db.execute("SELECT task_id FROM examples WHERE id = 'a'").fetchone() == (None,)


# -- annotations ------------------------------------------------------------------------------------


def test_record_annotations_labels_examples(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b", "c"))
    added = ledger.record_annotations([ann("a", "cat"), ann("c", "dog")])
    assert added == 2
    assert ledger.labels() == {"a": "cat", "c": "dog"}
    assert ledger.pending() == {"b": None}
    assert ledger.status_counts() == {"labeled": 2, "queued": 1}
    rows = ledger.annotations()
    assert [(r["example_id"], r["value"], r["annotator"]) for r in rows] == [("a", "cat", "alice"),
                                                                            ("c", "dog", "alice")]
    # the context of the pick is copied onto the annotation for the audit trail
    assert rows[0]["round"] == 0 and rows[0]["model_version"] == "v0" and rows[0]["predicted_label"] == "cat"
    assert rows[0]["superseded_by"] is None


def test_labels_are_in_round_then_rank_order(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("b", "a"))
    ledger.queue_round(1, "margin", "v1", picks("c"))
    ledger.record_annotations([ann("c", "x"), ann("a", "y"), ann("b", "z")])
    assert list(ledger.labels()) == ["b", "a", "c"]


def test_recording_the_same_annotation_twice_is_idempotent(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    batch = [ann("a", "cat", external_id="ls-1", updated_at="t1"), ann("b", "dog")]
    assert ledger.record_annotations(batch) == 2
    assert ledger.record_annotations(batch) == 0
    assert ledger.record_annotations([ann("b", "dog")]) == 0
    assert len(ledger.annotations()) == 2
    assert ledger.labels() == {"a": "cat", "b": "dog"}


def test_newer_annotation_with_same_external_id_supersedes(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    assert ledger.record_annotations([ann("a", "cat", external_id="ls-1", updated_at="t1")]) == 1
    assert ledger.labels() == {"a": "cat"}
    assert ledger.record_annotations([ann("a", "dog", external_id="ls-1", updated_at="t2")]) == 1
    assert ledger.labels() == {"a": "dog"}
    old, new = ledger.annotations()
    assert (old["value"], new["value"]) == ("cat", "dog")
    assert old["superseded_by"] == new["seq"]
    assert new["superseded_by"] is None


def test_annotation_without_external_id_supersedes_same_annotator_only(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    ledger.record_annotations([ann("a", "cat", annotator="alice"), ann("a", "cat", annotator="bob")])
    ledger.record_annotations([ann("a", "dog", annotator="alice")])
    rows = ledger.annotations()
    assert [r["superseded_by"] for r in rows] == [rows[2]["seq"], None, None]
    # alice now says dog, bob says cat: a tie, the earliest current answer (bob's) wins
    assert ledger.labels() == {"a": "cat"}


def test_majority_label_over_several_annotators(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    ledger.record_annotations([ann("a", "cat", "alice", "ls-1"), ann("a", "dog", "bob", "ls-2"),
                               ann("a", "dog", "carol", "ls-3")])
    assert ledger.labels() == {"a": "dog"}


def test_majority_tie_goes_to_earliest_answer(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    ledger.record_annotations([ann("a", "dog", "alice", "ls-1"), ann("a", "cat", "bob", "ls-2")])
    # answers to b come in two pulls: the earlier pull wins the tie
    ledger.record_annotations([ann("b", "cat", "bob", "ls-3")])
    ledger.record_annotations([ann("b", "dog", "alice", "ls-4")])
    assert ledger.labels() == {"a": "dog", "b": "cat"}


def test_resaving_an_unchanged_answer_does_not_flip_a_tie(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    ledger.record_annotations([ann("a", "cat", "alice", "ls-1", "t1", created_at="2026-01-01T00:00:00.000+00:00"),
                               ann("a", "dog", "bob", "ls-2", "t1", created_at="2026-01-01T00:05:00.000+00:00")])
    assert ledger.labels() == {"a": "cat"}  # tie, alice answered first
    # alice opens her annotation again and saves it without changing it: still cat, still first
    ledger.record_annotations([ann("a", "cat", "alice", "ls-1", "t2", created_at="2026-01-01T00:00:00.000+00:00")])
    assert ledger.labels() == {"a": "cat"}


def test_majority_ignores_superseded_answers(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    ledger.record_annotations([ann("a", "cat", "alice", "ls-1", "t1"), ann("a", "dog", "bob", "ls-2", "t1"),
                               ann("a", "cat", "carol", "ls-3", "t1")])
    assert ledger.labels() == {"a": "cat"}
    ledger.record_annotations([ann("a", "dog", "carol", "ls-3", "t2")])
    assert ledger.labels() == {"a": "dog"}
    assert len(ledger.annotations()) == 4


def test_annotation_for_unknown_example_rolls_back_the_batch(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    with pytest.raises(ValueError, match="unknown example 'zzz'"):
        ledger.record_annotations([ann("a", "cat"), ann("zzz", "dog")])
    assert ledger.annotations() == []
    assert ledger.labels() == {}
    assert ledger.pending() == {"a": None}


# -- refusing to pick twice, atomically -------------------------------------------------------------


def _snapshot(ledger: Ledger):
    raw = ledger._db  # read-only peek at the tables to prove nothing was written
    return (raw.execute("SELECT * FROM rounds ORDER BY round").fetchall(),
            raw.execute("SELECT * FROM examples ORDER BY id").fetchall())


@pytest.mark.parametrize("reused", ["queued", "labeled", "skipped"])
def test_queue_round_refuses_used_example_and_writes_nothing(ledger: Ledger, reused: str):
    ledger.queue_round(0, "margin", "v0", picks("queued", "labeled", "skipped"))
    ledger.record_annotations([ann("labeled", "cat")])
    ledger.record_skipped(["skipped"])
    before = _snapshot(ledger)

    with pytest.raises(ValueError, match="already in use"):
        ledger.queue_round(1, "margin", "v1", picks("fresh-1", reused, "fresh-2"))

    assert _snapshot(ledger) == before
    assert [r.round for r in ledger.rounds()] == [0]
    assert "fresh-1" not in ledger.used_ids() and "fresh-2" not in ledger.used_ids()
    assert ledger.status_counts() == {"queued": 1, "labeled": 1, "skipped": 1}
    # the ledger is still usable: the same round without the reused example goes through
    ledger.queue_round(1, "margin", "v1", picks("fresh-1", "fresh-2"))
    assert [r.round for r in ledger.rounds()] == [0, 1]
    assert set(ledger.pending()) == {"queued", "fresh-1", "fresh-2"}


def test_queue_round_with_existing_round_index_writes_nothing(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a"))
    before = _snapshot(ledger)
    with pytest.raises(sqlite3.IntegrityError):
        ledger.queue_round(0, "margin", "v0", picks("b"))
    assert _snapshot(ledger) == before


def test_record_skipped(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", picks("a", "b", "c"))
    ledger.record_annotations([ann("c", "cat")])
    ledger.record_skipped(["b", "c", "never-picked"])
    assert ledger.status_counts() == {"queued": 1, "skipped": 1, "labeled": 1}
    assert ledger.pending() == {"a": None}
    assert ledger.labels() == {"c": "cat"}  # a labeled example is not downgraded to skipped
    assert ledger.used_ids() == {"a", "b", "c"}
    with pytest.raises(ValueError, match="already in use"):
        ledger.queue_round(1, "margin", "v1", picks("b"))


# -- resume -----------------------------------------------------------------------------------------


def test_resume_after_close_keeps_everything(path: Path):
    with Ledger.open(path) as ledger:
        ledger.bind({"pool": "sha-1"})
        ledger.queue_round(0, "entropy", "v0", picks("a", "b", "c"))
        ledger.mark_pushed({"a": "t-a", "b": "t-b"})
        ledger.record_annotations([ann("a", "cat", external_id="ls-1", updated_at="t1")])
        ledger.record_skipped(["b"])
        ledger.finish_round(0, 1, {"accuracy": 0.5})
        annotations = ledger.annotations()

    with Ledger.open(path) as ledger:
        assert ledger.get_meta("pool") == "sha-1"
        assert ledger.labels() == {"a": "cat"}
        assert ledger.pending() == {"c": None}
        assert ledger.unpushed() == [("c", 0, 2)]
        assert ledger.status_counts() == {"labeled": 1, "skipped": 1, "queued": 1}
        assert ledger.annotations() == annotations
        (record,) = ledger.rounds()
        assert (record.round, record.strategy, record.status, record.batch_size, record.n_labels,
                record.metrics) == (0, "entropy", "evaluated", 3, 1, {"accuracy": 0.5})
        assert ledger.open_round() == record
        # the same annotation pulled again after the restart is still a duplicate
        assert ledger.record_annotations([ann("a", "cat", external_id="ls-1", updated_at="t1")]) == 0
        with pytest.raises(ValueError, match="already in use"):
            ledger.queue_round(1, "entropy", "v1", picks("a"))


# -- the lock ---------------------------------------------------------------------------------------

TRY_OPEN = textwrap.dedent("""
    import sys
    from al_loop.ledger import Ledger
    try:
        with Ledger.open(sys.argv[1]) as ledger:
            print("opened", sorted(ledger.used_ids()))
    except Exception as error:
        print(type(error).__name__)
""")


def _open_in_other_process(path: Path) -> str:
    result = subprocess.run([sys.executable, "-c", TRY_OPEN, str(path)], capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.strip()


def test_second_open_in_same_process_is_busy(path: Path):
    with Ledger.open(path) as ledger:
        ledger.queue_round(0, "margin", None, picks("a"))
        with pytest.raises(LedgerBusyError, match="another al-loop process"), Ledger.open(path):
            pass
        # the failed attempt did not release the holder's lock nor break its connection
        with pytest.raises(LedgerBusyError):
            Ledger.open(path).__enter__()
        assert ledger.pending() == {"a": None}
    with Ledger.open(path) as ledger:  # released on exit
        assert ledger.pending() == {"a": None}


def test_lock_is_released_when_the_block_raises(path: Path):
    with pytest.raises(RuntimeError), Ledger.open(path):
        raise RuntimeError("crash inside the run")
    with Ledger.open(path) as ledger:
        assert ledger.rounds() == []


def test_other_process_is_refused_while_open_then_admitted(path: Path):
    with Ledger.open(path) as ledger:
        ledger.queue_round(0, "margin", None, picks("a"))
        assert _open_in_other_process(path) == "LedgerBusyError"
    assert _open_in_other_process(path) == "opened ['a']"


# -- identity ---------------------------------------------------------------------------------------


def test_bind_stores_identity_then_refuses_a_different_one(ledger: Ledger):
    ledger.bind({"pool": "sha-1", "config": "cfg-1"})
    assert ledger.get_meta("pool") == "sha-1" and ledger.get_meta("config") == "cfg-1"
    ledger.bind({"pool": "sha-1", "config": "cfg-1"})  # same identity: fine
    ledger.bind({"pool": "sha-1", "strategy": "margin"})  # a new key is stored
    assert ledger.get_meta("strategy") == "margin"

    with pytest.raises(LedgerMismatchError, match="different config;"):
        ledger.bind({"pool": "sha-1", "config": "cfg-2"})
    with pytest.raises(LedgerMismatchError, match="different pool, config"):
        ledger.bind({"pool": "sha-2", "config": "cfg-2"})
    # the stored identity is not overwritten by a refused bind
    assert ledger.get_meta("pool") == "sha-1" and ledger.get_meta("config") == "cfg-1"


def test_get_meta_missing_is_none(ledger: Ledger):
    assert ledger.get_meta("nothing") is None
    ledger.set_meta("k", "1")
    ledger.set_meta("k", "2")
    assert ledger.get_meta("k") == "2"


# -- rounds -----------------------------------------------------------------------------------------


def test_round_states_queued_evaluated_logged(ledger: Ledger):
    assert ledger.open_round() is None
    ledger.queue_round(0, "least_confidence", "v0", picks("a", "b"))
    current = ledger.open_round()
    assert current is not None
    assert (current.round, current.status, current.batch_size, current.n_labels, current.metrics,
            current.model_version) == (0, "queued", 2, None, {}, "v0")

    ledger.finish_round(0, 2, {"accuracy": 0.75, "macro_f1": 0.7})
    current = ledger.open_round()
    assert (current.round, current.status, current.n_labels, current.metrics) == (
        0, "evaluated", 2, {"accuracy": 0.75, "macro_f1": 0.7})

    ledger.mark_logged(0)
    assert ledger.rounds()[0].status == "logged"
    assert ledger.open_round() is None

    ledger.queue_round(1, "least_confidence", "v1", picks("c"))
    assert ledger.open_round().round == 1
    assert [(r.round, r.status) for r in ledger.rounds()] == [(0, "logged"), (1, "queued")]


# -- property: rounds never share an example, labels count the distinct annotated examples ------------

UNIVERSE = [f"e{i}" for i in range(12)]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self._context = Ledger.open(Path(self._tmp.name) / "ledger.sqlite")
        self.ledger = self._context.__enter__()
        self.round = 0
        self.round_of: dict[str, int] = {}  # example -> the round that picked it
        self.annotated: set[str] = set()
        self.skipped: set[str] = set()
        self.n_annotations = 0

    def teardown(self) -> None:
        self._context.__exit__(None, None, None)
        self._tmp.cleanup()

    @rule(ids=st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=4, unique=True))
    def queue(self, ids: list[str]) -> None:
        if any(e in self.round_of for e in ids):
            with pytest.raises(ValueError, match="already in use"):
                self.ledger.queue_round(self.round, "margin", "v", picks(*ids))
            return
        self.ledger.queue_round(self.round, "margin", "v", picks(*ids))
        self.round_of.update(dict.fromkeys(ids, self.round))
        self.round += 1

    @precondition(lambda self: self.round_of)
    @rule(data=st.data(), annotator=st.sampled_from(["alice", "bob"]), label=st.sampled_from(["cat", "dog"]))
    def annotate(self, data, annotator: str, label: str) -> None:
        example = data.draw(st.sampled_from(sorted(self.round_of)))
        answer = ann(example, label, annotator=annotator, external_id=f"{example}-{annotator}",
                     updated_at=label)
        already = any(r["example_id"] == example and r["annotator"] == annotator and r["value"] == label
                      and r["superseded_by"] is None for r in self.ledger.annotations())
        added = self.ledger.record_annotations([answer])
        assert added == (0 if already else 1)
        self.n_annotations += added
        self.annotated.add(example)

    @precondition(lambda self: self.round_of)
    @rule(data=st.data())
    def skip(self, data) -> None:
        example = data.draw(st.sampled_from(sorted(self.round_of)))
        self.ledger.record_skipped([example])
        if example not in self.annotated:
            self.skipped.add(example)

    @invariant()
    def no_example_in_two_rounds(self) -> None:
        seen: dict[str, int] = {}
        for r in self.ledger.rounds():
            ids = [row[0] for row in self.ledger._db.execute("SELECT id FROM examples WHERE round = ?",
                                                            (r.round,))]
            assert len(ids) == r.batch_size
            for e in ids:
                assert e not in seen
                seen[e] = r.round
        assert seen == self.round_of
        assert self.ledger.used_ids() == set(self.round_of)

    @invariant()
    def labels_count_distinct_annotated_examples(self) -> None:
        labels = self.ledger.labels()
        assert len(labels) == len(self.annotated)
        assert set(labels) == self.annotated
        assert set(self.ledger.pending()) == set(self.round_of) - self.annotated - self.skipped
        assert len(self.ledger.annotations()) == self.n_annotations


LedgerMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=15, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestLedgerMachine = LedgerMachine.TestCase


def test_a_round_cannot_pick_one_example_twice(ledger: Ledger):
    with pytest.raises(ValueError, match="same example twice"):
        ledger.queue_round(0, "margin", "v0", picks("a", "a"))
    assert ledger.rounds() == [] and ledger.used_ids() == set()


def test_a_refused_bind_stores_nothing(ledger: Ledger):
    ledger.bind({"config_identity": "abc"})
    with pytest.raises(LedgerMismatchError):
        ledger.bind({"config_identity": "other", "pool_fingerprint": "new"})
    assert ledger.get_meta("pool_fingerprint") is None


def test_record_pull_stores_answers_skips_removals_and_cursor_together(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", picks("a", "b", "c", "d"))
    ledger.mark_pushed({"a": "1", "b": "2", "c": "3", "d": "4"})
    added = ledger.record_pull(PullResult(annotations=[ann("a", "dog"), ann("zzz", "cat")], skipped=["b"],
                                          removed=["c"], cursor="2026-01-01T00:00:05.000Z"))
    assert added == 1, "the annotation of an example this run never picked is ignored"
    assert ledger.status_counts() == {"labeled": 1, "skipped": 1, "unlabeled": 1, "queued": 1}
    assert ledger.get_meta("pull_cursor") == "2026-01-01T00:00:05.000Z"
    assert "c" not in ledger.used_ids(), "an example whose task was deleted returns to the pool"
    ledger.queue_round(1, "margin", "v1", picks("c"))  # and can be picked again
    assert ledger.pending() == {"c": None, "d": "4"}


def test_record_pull_is_all_or_nothing(ledger: Ledger, monkeypatch: pytest.MonkeyPatch):
    from al_loop import ledger as ledger_module
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", picks("a", "b"))

    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger_module, "_mark_skipped", broken)
    with pytest.raises(RuntimeError):
        ledger.record_pull(PullResult(annotations=[ann("a", "dog")], skipped=["b"], cursor="c1"))
    assert ledger.status_counts() == {"queued": 2}
    assert ledger.get_meta("pull_cursor") is None and ledger.annotations() == []


# -- overlap, skips, adjudication --------------------------------------------------------------------


def overlapped(*ids: str, required: int = 3) -> list[Pick]:
    return [Pick(example_id=e, rank=i, ambiguity=None, predicted_label="cat", confidence=0.6, required=required)
            for i, e in enumerate(ids)]


def test_an_overlapped_example_waits_for_all_its_annotators(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", overlapped("a"))
    ledger.record_annotations([ann("a", "dog", "alice", "ls-1"), ann("a", "cat", "bob", "ls-2")])
    assert ledger.labels() == {} and ledger.pending() == {"a": None}, "2 of 3 answers: not a label yet"
    ledger.record_annotations([ann("a", "dog", "carol", "ls-3")])
    assert ledger.labels() == {"a": "dog"}
    (row,) = ledger.examples()
    assert row["label_method"] == "majority" and row["agreement"] == pytest.approx(2 / 3)
    assert row["required"] == 3 and row["adjudication"] is None


def test_skips_count_towards_completion_and_everyone_skipping_skips_the_example(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", overlapped("a", "b", "c", required=2))
    ledger.record_pull(PullResult(annotations=[ann("a", "dog", "alice", "ls-1")], cancelled={"a": 1, "b": 1}))
    assert ledger.status_counts() == {"labeled": 1, "queued": 2}
    assert ledger.examples()[0]["label_method"] == "single"
    ledger.record_pull(PullResult(cancelled={"b": 2}))
    assert ledger.status_counts() == {"labeled": 1, "skipped": 1, "queued": 1}
    ledger.record_pull(PullResult(cancelled={"c": 2}), settlement=Settlement(repush_skipped=True))
    assert "c" not in ledger.used_ids(), "with repush_skipped the example goes back to the pool"


def test_a_split_goes_to_a_specialist_whose_answer_wins(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    rule = Settlement(escalate_below=0.7)
    ledger.queue_round(0, "margin", "v0", overlapped("a", "b"))
    ledger.mark_pushed({"a": "1", "b": "2"})
    answers = [ann("a", "dog", "alice", "ls-1"), ann("a", "cat", "bob", "ls-2"), ann("a", "dog", "carol", "ls-3"),
               ann("b", "cat", "alice", "ls-4"), ann("b", "cat", "bob", "ls-5"), ann("b", "cat", "carol", "ls-6")]
    ledger.record_pull(PullResult(annotations=answers), settlement=rule)
    assert ledger.labels() == {"b": "cat"}, "a 2-1 split is below 0.7: no label until the specialist answers"
    assert ledger.pending() == {}, "routine annotators are done with it"
    assert ledger.escalations_unpushed() == [("a", 0, 0)]
    assert ledger.answers_of("a") == [("alice", "dog"), ("bob", "cat"), ("carol", "dog")]
    assert ledger.round_progress(0) == (1, 2), "the round waits for the specialist"

    ledger.mark_escalations_pushed({"a": "91"})
    assert ledger.escalations_unpushed() == [] and ledger.escalations_pending() == {"a": "91"}
    expert = ann("a", "cat", "expert1", "ls-99", created_at="2026-01-02T00:00:00.000+00:00")
    ledger.record_pull(PullResult(annotations=[expert]), cursor_key="expert_pull_cursor", lane="expert",
                       settlement=rule)
    assert ledger.labels() == {"a": "cat", "b": "cat"}, "the specialist outranks the 2-1 majority"
    row = next(r for r in ledger.examples() if r["id"] == "a")
    assert (row["label_method"], row["adjudication"]) == ("expert", "expert")
    assert ledger.escalations_pending() == {}
    assert ledger.apply_consensus({"a": "dog", "b": "dog"}, "dawid_skene") == 1, "an expert label is kept"
    assert ledger.labels() == {"a": "cat", "b": "dog"}
    assert [r["lane"] for r in ledger.annotations()] == ["routine"] * 6 + ["expert"]


def test_a_skipping_specialist_leaves_the_majority_and_a_deleted_task_is_pushed_again(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    rule = Settlement(escalate_below=0.7)
    ledger.queue_round(0, "margin", "v0", overlapped("a", "b", required=2))
    ledger.record_annotations([ann("a", "dog", "alice"), ann("a", "cat", "bob"), ann("b", "dog", "alice"),
                               ann("b", "cat", "bob")], settlement=rule)
    ledger.mark_escalations_pushed({"a": "7", "b": "8"})
    ledger.record_pull(PullResult(cancelled={"a": 1}, removed=["b"]), lane="expert", settlement=rule)
    assert ledger.labels() == {"a": "dog"}, "the specialist skipped: the majority (tie -> first answer) stands"
    assert next(r for r in ledger.examples() if r["id"] == "a")["adjudication"] == "expert_skipped"
    assert ledger.escalations_unpushed() == [("b", 0, 1)], "its specialist task was deleted: push it again"


def test_an_old_ledger_gains_the_new_columns_and_keeps_its_rows(path: Path):
    with Ledger.open(path) as ledger:
        ledger.queue_round(0, "margin", "v0", picks("a"))
        ledger.record_annotations([ann("a", "cat")])
    with sqlite3.connect(path) as db:  # as written before overlap existed
        db.execute("DROP INDEX examples_adjudication")  # an index on a column added since
        for column in ("required", "skips", "label_method", "agreement", "adjudication", "escalated_at",
                       "expert_task_id"):
            db.execute(f"ALTER TABLE examples DROP COLUMN {column}")
        db.execute("ALTER TABLE annotations DROP COLUMN lane")
    with Ledger.open(path) as ledger:
        assert ledger.labels() == {"a": "cat"}
        assert ledger.examples()[0]["required"] == 1 and ledger.annotations()[0]["lane"] == "routine"


def test_read_only_opens_while_a_loop_holds_the_lock(path: Path):
    with Ledger.open(path) as ledger:
        ledger.queue_round(0, "margin", "v0", picks("a"))
        ledger.record_annotations([ann("a", "cat")])
        with Ledger.read_only(path) as reader:
            assert reader.labels() == {"a": "cat"}
            with pytest.raises(sqlite3.OperationalError):
                reader.set_meta("x", "y")
    with pytest.raises(FileNotFoundError), Ledger.read_only(path.with_name("missing.sqlite")):
        pass


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.sampled_from(["al", "bo", "cy", "di"]), st.sampled_from("xy")),
                                   max_size=8))
def test_the_label_is_the_majority_of_current_answers_once_enough_have_answered(required: int,
                                                                                answers: list[tuple[str, str]]):
    with tempfile.TemporaryDirectory() as folder, Ledger.open(Path(folder) / "l.sqlite") as ledger:
        ledger.queue_round(0, "margin", "v0", overlapped("a", required=required))
        for i, (who, value) in enumerate(answers):
            ledger.record_annotations([ann("a", value, who, created_at=f"2026-01-01T00:00:{i:02d}.000+00:00")])
        latest: dict[str, str] = {}
        for who, value in answers:
            if latest.get(who) == value:
                continue  # the same answer again is not a new answer
            latest.pop(who, None)
            latest[who] = value
        if len(latest) < required:
            assert ledger.labels() == {}
        else:
            values = list(latest.values())
            best = max(values.count(v) for v in values)
            assert ledger.labels() == {"a": next(v for v in values if values.count(v) == best)}


def test_an_example_picked_again_after_its_task_was_deleted_starts_afresh(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", overlapped("a", required=2))
    ledger.record_annotations([ann("a", "cat", "alice", "ls-1")])
    ledger.record_pull(PullResult(removed=["a"]))  # its task was deleted: back to the pool
    ledger.queue_round(1, "margin", "v1", overlapped("a", required=2))
    ledger.record_annotations([ann("a", "dog", "bob", "ls-2")])
    assert ledger.labels() == {}, "alice's answer was to the deleted task: one of two answers so far"
    ledger.record_annotations([ann("a", "dog", "carol", "ls-3")])
    assert ledger.labels() == {"a": "dog"}
    assert len(ledger.annotations()) == 3, "the earlier answer stays in the trail"
    assert [r[1] for r in ledger.current_answers()] == ["bob", "carol"]


def test_a_skip_answered_later_no_longer_counts_and_a_specialist_skip_settles(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", overlapped("a", required=2))
    ledger.record_pull(PullResult(annotations=[ann("a", "cat", "alice", "ls-1")], cancelled={"a": 1}))
    assert ledger.labels() == {"a": "cat"}, "one answer and one skip close an example of overlap 2"
    ledger.queue_round(1, "margin", "v1", overlapped("b", required=2))
    ledger.record_pull(PullResult(cancelled={"b": 1}))
    ledger.record_pull(PullResult(annotations=[ann("b", "cat", "bob", "ls-2")], cancelled={"b": 0}))
    assert "b" not in ledger.labels(), "bob skipped, then answered: one answer of two, still waiting"

    rule = Settlement(escalate_below=0.7)
    ledger.queue_round(2, "margin", "v2", overlapped("c", required=2))
    ledger.record_annotations([ann("c", "dog", "alice", "ls-3"), ann("c", "cat", "bob", "ls-4")], settlement=rule)
    ledger.mark_escalations_pushed({"c": "9"})
    ledger.record_pull(PullResult(skipped=["c"]), lane="expert", settlement=rule)
    assert ledger.labels()["c"] == "dog", "a specialist who skips leaves the majority, the example is not stuck"


def test_partly_answered_counts_examples_short_of_their_overlap(ledger: Ledger):
    ledger.queue_round(0, "margin", "v0", overlapped("a", "b", "c"))
    ledger.record_annotations([ann("a", "cat", "alice"), ann("b", "cat", "alice"), ann("b", "cat", "bob"),
                               ann("b", "cat", "carol")])
    assert ledger.partly_answered(0) == 1, "a: 1 of 3 answers; b: complete; c: nobody yet"
    assert ledger.partly_answered(1) == 0


# -- people in the annotation tool: deleted answers and tasks, empty submissions ------------------------


def test_a_deleted_answer_is_retired_and_its_labeled_example_waits_again_on_its_task(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    ledger.mark_pushed({"a": "1", "b": "2"})
    ledger.record_pull(PullResult(annotations=[ann("a", "dog", external_id="ls-10"),
                                               ann("b", "cat", external_id="ls-11")]))
    assert ledger.labels() == {"a": "dog", "b": "cat"}
    ledger.record_pull(PullResult(held={"1": frozenset(), "2": frozenset({"ls-11"}), "99": frozenset()}))
    assert ledger.labels() == {"b": "cat"}, "a's only answer was deleted: it no longer trains"
    assert ledger.pending() == {"a": "1"}, "a waits again, on its same task"
    rows = {r["external_id"]: r for r in ledger.annotations()}
    assert rows["ls-10"]["deleted_at"] is not None and rows["ls-10"]["superseded_by"] is None
    assert rows["ls-11"]["deleted_at"] is None
    ledger.record_pull(PullResult(annotations=[ann("a", "bird", "carol", external_id="ls-12")],
                                  held={"1": frozenset({"ls-12"})}))
    assert ledger.labels()["a"] == "bird" and len(ledger.annotations()) == 3, "the trail keeps the deleted one"


def test_a_deleted_answer_to_an_overlapped_example_is_resettled_on_the_rest(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", overlapped("a", required=2))
    ledger.mark_pushed({"a": "1"})
    ledger.record_pull(PullResult(annotations=[ann("a", "dog", "alice", external_id="ls-1"),
                                               ann("a", "cat", "bob", external_id="ls-2")]))
    assert ledger.labels() == {"a": "dog"}
    ledger.record_pull(PullResult(held={"1": frozenset({"ls-2"})}))
    assert ledger.labels() == {} and ledger.pending() == {"a": "1"}, "one answer of two left: it waits"
    ledger.record_pull(PullResult(annotations=[ann("a", "cat", "carol", external_id="ls-3")]))
    assert ledger.labels() == {"a": "cat"}, "bob and carol: alice's deleted answer no longer votes"


def test_a_deleted_answered_task_retires_its_answers_and_returns_the_example_to_the_pool(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    ledger.mark_pushed({"a": "1", "b": "2"})
    ledger.record_pull(PullResult(annotations=[ann("a", "dog", external_id="ls-1"),
                                               ann("b", "cat", external_id="ls-2")]))
    assert ledger.closed_tasks() == {"a": "1", "b": "2"}
    ledger.record_pull(PullResult(removed=["a"]))
    assert ledger.labels() == {"b": "cat"} and "a" not in ledger.used_ids()
    assert [r["deleted_at"] is not None for r in ledger.annotations()] == [True, False]
    ledger.queue_round(1, "margin", "v1", picks("a"))  # picked again, it starts afresh
    assert ledger.pending() == {"a": None} and ledger.closed_tasks() == {"b": "2"}


def test_an_empty_submission_counts_for_nothing_and_is_reported_until_answered(ledger: Ledger):
    from al_loop.annotators.base import PullResult
    from al_loop.ledger import EMPTY

    ledger.queue_round(0, "margin", "v0", picks("a", "b"))
    ledger.mark_pushed({"a": "1", "b": "2"})
    ledger.record_pull(PullResult(annotations=[ann("a", EMPTY, "alice", external_id="ls-1"),
                                               ann("b", "cat", "bob", external_id="ls-2")]))
    assert ledger.labels() == {"b": "cat"} and ledger.round_progress(0) == (1, 2)
    (empty,) = ledger.empty_submissions()
    assert (empty["example_id"], empty["task_id"], empty["annotator"], empty["required"]) == ("a", "1", "alice", 1)
    assert ledger.partly_answered(0) == 0, "an empty submission is no answer"
    ledger.record_pull(PullResult(annotations=[ann("a", "dog", "carol", external_id="ls-3")]))
    assert ledger.labels()["a"] == "dog" and ledger.empty_submissions() == []
    assert [r["value"] for r in ledger.annotations() if r["example_id"] == "a"] == [EMPTY, "dog"]


def test_a_deleted_specialist_answer_sends_the_example_back_to_its_specialist(ledger: Ledger):
    from al_loop.annotators.base import PullResult

    rule = Settlement(escalate_below=0.7)
    ledger.queue_round(0, "margin", "v0", overlapped("a", required=2))
    ledger.mark_pushed({"a": "1"})
    ledger.record_annotations([ann("a", "dog", "alice"), ann("a", "cat", "bob")], settlement=rule)
    ledger.mark_escalations_pushed({"a": "7"})
    ledger.record_pull(PullResult(annotations=[ann("a", "cat", "expert", external_id="ls-9")]), lane="expert",
                       cursor_key="expert_pull_cursor", settlement=rule)
    assert ledger.labels() == {"a": "cat"}
    ledger.record_pull(PullResult(held={"7": frozenset()}), lane="expert", cursor_key="expert_pull_cursor",
                       settlement=rule)
    assert ledger.labels() == {} and ledger.escalations_pending() == {"a": "7"}
