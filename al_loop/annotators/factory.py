"""Build the annotators a config names: the routine lane (the simulated oracle or crowd, or Label Studio,
optionally with bots) and, when disagreements are adjudicated, the specialist lane."""

from __future__ import annotations

from al_loop.annotators.base import Annotator
from al_loop.annotators.simulated import SimulatedAnnotator
from al_loop.config import BotsConfig, Config, LabelStudioAnnotatorConfig
from al_loop.errors import LedgerMismatchError
from al_loop.ledger import Ledger
from al_loop.workspace import Workspace

EXPERT_PREFIX = "expert"


def build_annotator(config: Config, workspace: Workspace, ledger: Ledger) -> Annotator:
    """The routine annotators of a run; a Label Studio project, once chosen, is remembered in the ledger."""
    truth = _truth(workspace)
    settings = config.annotator
    if not isinstance(settings, LabelStudioAnnotatorConfig):
        return SimulatedAnnotator(truth, workspace.classes, noise=settings.noise, seed=config.seed,
                                  accuracy=settings.accuracy, required=config.required_answers)
    return _label_studio(config, settings, workspace, ledger, truth, specialist=False)


def build_specialists(config: Config, workspace: Workspace, ledger: Ledger) -> Annotator | None:
    """The specialist lane (a separate Label Studio project, or a simulated expert), if adjudication is on."""
    if config.quality.adjudication.min_agreement is None:
        return None
    truth = _truth(workspace)
    settings = config.annotator
    if not isinstance(settings, LabelStudioAnnotatorConfig):
        return SimulatedAnnotator(truth, workspace.classes, seed=config.seed, accuracy=[settings.expert_accuracy],
                                  prefix=EXPERT_PREFIX)
    return _label_studio(config, settings, workspace, ledger, truth, specialist=True)


def _truth(workspace: Workspace) -> dict[str, str | None]:
    pool = workspace.splits.pool
    return dict(zip(pool.ids, pool.labels if pool.labels is not None else [None] * len(pool), strict=True))


def _label_studio(config: Config, settings: LabelStudioAnnotatorConfig, workspace: Workspace, ledger: Ledger,
                  truth: dict[str, str | None], specialist: bool) -> Annotator:
    # imported here: the Label Studio modules are only needed (and their SDK only loaded) when used
    from al_loop.annotators.labelstudio import LabelStudioAnnotator
    from al_loop.labelstudio.bots import Bots
    from al_loop.labelstudio.connection import connect
    from al_loop.labelstudio.project import ensure_project

    conn = connect(settings, config.output_dir)
    adjudication = config.quality.adjudication
    key = "labelstudio_expert_project" if specialist else "labelstudio_project"
    configured = adjudication.project_id if specialist else settings.project_id
    remembered = ledger.get_meta(key)
    if remembered is not None and configured is not None and int(remembered) != configured:
        setting = "quality.adjudication.project_id" if specialist else "annotator.project_id"
        raise LedgerMismatchError(f"this run's tasks are in Label Studio project {remembered}, but {setting} is "
                                  f"{configured}; restore it or use a new output_dir")
    title = settings.project_title or f"al-loop {config.dataset_label} {config.run_name}"[:50]
    if specialist:
        title = adjudication.project_title or f"{title[:42]} experts"
    quality = config.quality
    overlap = 1 if specialist or quality.overlap_share < 1 else quality.overlap
    project_id = ensure_project(conn, title, workspace.classes, project_id=configured or (
        int(remembered) if remembered else None), overlap=overlap, specialist=specialist)
    ledger.set_meta(key, str(project_id))
    ledger.set_meta("labelstudio_url", conn.url)
    bots = None
    if settings.simulate is not None:
        crowd = settings.simulate
        if specialist:
            crowd = BotsConfig(annotators=1, accuracy=[crowd.expert_accuracy])
        bots = Bots(conn, project_id, truth, workspace.classes, crowd, config.seed,
                    prefix=EXPERT_PREFIX if specialist else "bot")
    return LabelStudioAnnotator(conn, project_id, workspace.classes, config.dataset.text_column, bots=bots)
