"""The Label Studio project of a run: labeling config from the class names, find or create, check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

from label_studio_sdk.core.api_error import ApiError

from al_loop.errors import ServiceError
from al_loop.labelstudio.connection import Connection, call, describe_api_error

CHOICES_NAME = "label"
TEXT_NAME = "text"
PRIOR_NAME = "prior"  # specialist tasks: the answers given before, shown above the choices
UNCERTAINTY_SAMPLING = "Uncertainty sampling"  # the labeling stream serves the lowest prediction score first
# Text as written: line breaks and indentation kept (Label Studio's Text tag folds them into one paragraph)
TEXT_STYLE = ".htx-text, .htx-richtext { white-space: pre-wrap; }"


def labeling_config(classes: list[str], instructions: str = "Choose the class", specialist: bool = False) -> str:
    """Text (line breaks kept) + single, required Choices over the class names (the UI refuses a submission
    without a choice; the API still accepts one). Numeric rows are shown as readable `name: value` text. A
    specialist's config also shows the answers given before (who answered what)."""
    choices = "\n    ".join(f"<Choice value={quoteattr(c)}/>" for c in classes)
    prior = (f'  <Header value="Answers given before (they disagree)"/>\n'
             f'  <Text name="{PRIOR_NAME}" value="${PRIOR_NAME}"/>\n') if specialist else ""
    return (f"<View>\n  <Style>{TEXT_STYLE}</Style>\n  <Header value={quoteattr(instructions)}/>\n"
            f'  <Text name="{TEXT_NAME}" value="${TEXT_NAME}"/>\n{prior}'
            f'  <Choices name="{CHOICES_NAME}" toName="{TEXT_NAME}" choice="single" showInLine="false" '
            f'required="true">\n'
            f"    {choices}\n  </Choices>\n</View>")


def config_choices(label_config: str) -> list[str]:
    """The Choice values of the `label` Choices of a labeling config (empty if there is none)."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return []
    for node in root.iter("Choices"):
        if node.get("name") == CHOICES_NAME:
            return [c.get("value", "") for c in node.iter("Choice")]
    return []


def ensure_project(conn: Connection, title: str, classes: list[str], project_id: int | None = None,
                   overlap: int = 1, specialist: bool = False) -> int:
    """The project to use: by id, else by exact title, else a new one. Refuses one whose choices differ.

    A new project's maximum annotations is `overlap` (what most of its tasks ask for); a specialist project
    shows the earlier answers of each task."""
    client = conn.client
    if project_id is not None:
        try:
            project = client.projects.get(id=project_id)
        except ApiError as error:
            if error.status_code == 404:
                raise ServiceError(f"Label Studio at {conn.url} has no project {project_id} (annotator.project_id)"
                                   "; remove project_id to create one, or fix the id") from None
            raise ServiceError(describe_api_error(error, conn.url, "read the project")) from None
        _check_choices(conn, project.id, project.title, project.label_config or "", classes)
        return int(project.id)
    found = [p for p in call(lambda: list(client.projects.list(title=title)), conn.url, "list projects")
             if p.title == title]
    if len(found) > 1:
        raise ServiceError(f"{len(found)} projects are titled {title!r} on {conn.url}; set annotator.project_id "
                           f"to one of {[p.id for p in found]}")
    if found:
        project = client.projects.get(id=found[0].id)
        _check_choices(conn, project.id, project.title, project.label_config or "", classes)
        return int(project.id)
    created = call(lambda: client.projects.create(
        title=title, label_config=labeling_config(classes, specialist=specialist), sampling=UNCERTAINTY_SAMPLING,
        show_skip_button=True, maximum_annotations=overlap,
        description="Created by al-loop for specialists: tasks whose annotators disagreed." if specialist else
        "Created by al-loop. Tasks carry al_order (al-loop's order across rounds), al_rank (1 = most "
        "ambiguous of its round), al_confidence and the model's guess."),
        conn.url, "create the project")
    return int(created.id)


def _check_choices(conn: Connection, project_id: int, title: str, label_config: str, classes: list[str]) -> None:
    choices = config_choices(label_config)
    if sorted(choices) != sorted(classes):
        missing = sorted(set(classes) - set(choices))
        extra = sorted(set(choices) - set(classes))
        raise ServiceError(
            f"project {project_id} ({title!r}) on {conn.url} has choices that do not match dataset.classes "
            f"(missing: {missing}, not in classes: {extra}); refusing to relabel it. Use another "
            "annotator.project_title / project_id, or fix dataset.classes")
