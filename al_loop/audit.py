"""The audit trail as a file: for every label the model trains (or is measured) on, where it came from.

One row per label: the example, the label and how it was decided (single answer, majority, Dawid-Skene,
specialist, or a reviewer of routed traffic), the agreement among the answers, every answer (who, what,
when, seconds spent, routine or specialist, superseded, deleted in the annotation tool, or in force; an
empty label is a submission without a choice), the round, and the model version and
its prediction when the example was pushed. The ledger holds no secrets, and nothing else is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from al_loop.config import Config
from al_loop.errors import AlLoopError, ConfigError
from al_loop.ledger import Ledger

FORMATS = (".parquet", ".csv")
COLUMNS = ["run", "example_id", "purpose", "label", "consensus_method", "agreement", "n_answers", "adjudicated",
           "adjudication", "expert", "expert_label", "round", "rank", "ambiguity", "model_version",
           "model_prediction", "model_confidence", "task_id", "expert_task_id", "pushed_at", "escalated_at",
           "labeled_at", "answers"]


class NoRunError(AlLoopError):
    """There is no ledger for this config (yet)."""


@dataclass(frozen=True)
class AuditResult:
    path: Path
    labels: int
    adjudicated: int


def audit_table(config: Config) -> pd.DataFrame:
    """Every label of the run of `config` with its provenance (read-only: safe while the loop runs)."""
    path = config.output_dir / config.run_name / "ledger.sqlite"
    try:
        with Ledger.read_only(path) as ledger:
            examples = ledger.examples(("labeled",))
            annotations = ledger.annotations()
            reviewed = ledger.routed_reviewed()
    except FileNotFoundError:
        raise NoRunError(f"no run found at {path.parent}: run `al-loop run` with this config first (and the same "
                         "--strategy/--seed options, which name the run)") from None
    by_example: dict[str, list[dict[str, Any]]] = {}
    for a in annotations:
        by_example.setdefault(str(a["example_id"]), []).append({
            "annotator": a["annotator"], "label": a["value"], "lane": a.get("lane", "routine"),
            "created_at": a["created_at"], "updated_at": a["updated_at"], "seconds": a["lead_time"],
            "superseded": a["superseded_by"] is not None, "deleted": a.get("deleted_at") is not None,
            "deleted_at": a.get("deleted_at"), "external_id": a["external_id"]})
    rows = [_example_row(config.run_name, e, by_example.get(str(e["id"]), [])) for e in examples]
    rows += [_review_row(config.run_name, r) for r in reviewed]
    return pd.DataFrame(rows, columns=COLUMNS)


def export_audit(config: Config, out: Path) -> AuditResult:
    """Write the audit table to `out` (.parquet keeps the answers nested; .csv holds them as JSON)."""
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: unknown format {out.suffix!r}; name the file .parquet or .csv")
    table = audit_table(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.assign(answers=table["answers"].map(json.dumps)).to_csv(out, index=False)
    return AuditResult(path=out, labels=len(table), adjudicated=int(table["adjudicated"].sum()))


def _example_row(run: str, example: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    current = [a for a in answers if not a["superseded"] and not a["deleted"] and a["label"] != ""]
    experts = [a for a in current if a["lane"] == "expert"]
    routine = {a["annotator"] for a in current if a["lane"] == "routine"}
    adjudication = example.get("adjudication")
    return {
        "run": run, "example_id": str(example["id"]), "purpose": example["purpose"], "label": example["label"],
        "consensus_method": example.get("label_method") or _method_before_0_2(len(routine)),
        "agreement": example.get("agreement"),
        "n_answers": len(routine), "adjudicated": adjudication == "expert", "adjudication": adjudication,
        "expert": experts[-1]["annotator"] if experts else None,
        "expert_label": experts[-1]["label"] if experts else None,
        "round": example["round"], "rank": example["rank"], "ambiguity": example["ambiguity"],
        "model_version": example["model_version"], "model_prediction": example["predicted_label"],
        "model_confidence": example["confidence"], "task_id": example["task_id"],
        "expert_task_id": example.get("expert_task_id"), "pushed_at": example["pushed_at"],
        "escalated_at": example.get("escalated_at"), "labeled_at": example["updated_at"], "answers": answers,
    }


def _method_before_0_2(answers: int) -> str:
    """Ledgers written before consensus methods were recorded: one answer, or their majority."""
    return "single" if answers <= 1 else "majority"


def _review_row(run: str, routed: dict[str, Any]) -> dict[str, Any]:
    """A reviewer's label of routed traffic (it trains the model too)."""
    answer = {"annotator": routed["annotator"], "label": routed["label"], "lane": "review",
              "created_at": routed["labeled_at"], "updated_at": None, "seconds": routed["lead_time"],
              "superseded": False, "deleted": False, "deleted_at": None, "external_id": None}
    return {
        "run": run, "example_id": str(routed["id"]), "purpose": "routed", "label": routed["label"],
        "consensus_method": "review", "agreement": None, "n_answers": 1, "adjudicated": False,
        "adjudication": None, "expert": None, "expert_label": None, "round": None, "rank": None,
        "ambiguity": None, "model_version": routed["model"], "model_prediction": routed["predicted"],
        "model_confidence": routed["confidence"], "task_id": routed["task_id"], "expert_task_id": None,
        "pushed_at": routed["routed_at"], "escalated_at": None, "labeled_at": routed["labeled_at"],
        "answers": [answer],
    }
