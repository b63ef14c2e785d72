"""Build the annotator a config names: the simulated oracle, or Label Studio (optionally with bots)."""

from __future__ import annotations

from al_loop.annotators.base import Annotator
from al_loop.annotators.simulated import SimulatedAnnotator
from al_loop.config import Config, LabelStudioAnnotatorConfig
from al_loop.errors import LedgerMismatchError
from al_loop.ledger import Ledger
from al_loop.workspace import Workspace


def build_annotator(config: Config, workspace: Workspace, ledger: Ledger) -> Annotator:
    """The annotator of a run; a Label Studio project, once chosen, is remembered in the ledger."""
    pool = workspace.splits.pool
    truth = dict(zip(pool.ids, pool.labels if pool.labels is not None else [None] * len(pool), strict=True))
    if not isinstance(config.annotator, LabelStudioAnnotatorConfig):
        return SimulatedAnnotator(truth, workspace.classes, noise=config.annotator.noise, seed=config.seed)
    return _label_studio(config, config.annotator, workspace, ledger, truth)


def _label_studio(config: Config, settings: LabelStudioAnnotatorConfig, workspace: Workspace, ledger: Ledger,
                  truth: dict[str, str | None]) -> Annotator:
    # imported here: the Label Studio modules are only needed (and their SDK only loaded) when used
    from al_loop.annotators.labelstudio import LabelStudioAnnotator
    from al_loop.labelstudio.bots import Bots
    from al_loop.labelstudio.connection import connect
    from al_loop.labelstudio.project import ensure_project

    conn = connect(settings, config.output_dir)
    remembered = ledger.get_meta("labelstudio_project")
    if remembered is not None and settings.project_id is not None and int(remembered) != settings.project_id:
        raise LedgerMismatchError(f"this run's tasks are in Label Studio project {remembered}, but "
                                  f"annotator.project_id is {settings.project_id}; restore it or use a new output_dir")
    title = settings.project_title or f"al-loop {config.dataset_label} {config.run_name}"[:50]
    project_id = ensure_project(conn, title, workspace.classes,
                                project_id=settings.project_id or (int(remembered) if remembered else None),
                                overlap=settings.simulate.per_task if settings.simulate else 1)
    ledger.set_meta("labelstudio_project", str(project_id))
    ledger.set_meta("labelstudio_url", conn.url)
    bots = None
    if settings.simulate is not None:
        bots = Bots(conn, project_id, truth, workspace.classes, settings.simulate, config.seed)
    return LabelStudioAnnotator(conn, project_id, workspace.classes, config.dataset.text_column, bots=bots,
                                repush_skipped=settings.repush_skipped)
