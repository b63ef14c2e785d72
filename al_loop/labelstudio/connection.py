"""Connect to Label Studio: the local server (token from its credentials file) or a user's server
(token from the environment variable the config names). Errors become messages that say what to do."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from al_loop.config import LabelStudioAnnotatorConfig
from al_loop.errors import ConfigError, ServiceError
from al_loop.labelstudio.server import LocalServer
from al_loop.redact import looks_like_token, redact

T = TypeVar("T")
LEGACY_HINT = ("Label Studio 1.2x disables legacy tokens for new organizations: enable them (Organization → "
               "API tokens settings, or LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server) or use a "
               "personal access token")


@dataclass
class Connection:
    """A checked client, the server URL, and the id of the user it acts as."""

    client: LabelStudio
    url: str
    user_id: int
    local: LocalServer | None = None


def local_server(config: LabelStudioAnnotatorConfig, output_dir: Path) -> LocalServer:
    """The local server of an output folder (data under <output_dir>/labelstudio)."""
    return LocalServer(output_dir / "labelstudio", config.port)


def connect(config: LabelStudioAnnotatorConfig, output_dir: Path, start_local: bool = True) -> Connection:
    """Connect (starting the local server first when no URL is configured) and check the token."""
    local = None
    if config.url is None:
        local = local_server(config, output_dir)
        if start_local:
            local.start()
        url = local.url
        token = os.environ.get(config.token_env) or local.credentials().token
    else:
        url = config.url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"annotator.url must start with http:// or https:// (got {redact(repr(config.url))})")
        token = os.environ.get(config.token_env, "")
        if not token:
            name = "named there" if looks_like_token(config.token_env) else config.token_env  # never echo a token
            raise ConfigError(f"the environment variable {name} (annotator.token_env) is not set; "
                              "export your Label Studio API token or personal access token in it")
    client = LabelStudio(base_url=url, api_key=token, timeout=config.request_timeout,
                         max_retries=config.max_retries)  # the SDK retries 5xx/429/connect errors with backoff
    me = call(lambda: client.users.whoami(), url, "check the API token")
    return Connection(client=client, url=url, user_id=int(me.id), local=local)


def call(action: Callable[[], T], url: str, doing: str) -> T:
    """Run one SDK call; turn transport and HTTP errors into a ServiceError that says what to do (the URL is
    shown without credentials)."""
    url = redact(url)
    try:
        return action()
    except httpx.TimeoutException:
        raise ServiceError(f"Label Studio at {url} timed out while trying to {doing}; it may be overloaded. "
                           "Re-run the command: nothing recorded so far is lost") from None
    except httpx.TransportError as error:
        raise ServiceError(f"cannot reach Label Studio at {url} to {doing} ({type(error).__name__}). Is it "
                           "running? For the local server: al-loop labelstudio start CONFIG") from None
    except ApiError as error:
        raise ServiceError(describe_api_error(error, url, doing)) from None


def describe_api_error(error: ApiError, url: str, doing: str) -> str:
    url = redact(url)
    detail = error.body.get("detail", error.body) if isinstance(error.body, dict) else error.body
    if isinstance(error.body, dict) and error.body.get("validation_errors"):
        detail = f"{detail}: {error.body['validation_errors']}"
    if error.status_code == 401:
        hint = LEGACY_HINT if "legacy" in str(detail).lower() else "check the token in annotator.token_env"
        return f"Label Studio at {url} refused the token (401: {detail}) while trying to {doing}. {hint}"
    if error.status_code == 403:
        return f"Label Studio at {url} forbids this user to {doing} (403: {detail}); use an admin or owner token"
    if error.status_code == 404:
        return f"Label Studio at {url} has no such object when trying to {doing} (404: {detail})"
    return f"Label Studio at {url} failed to {doing} (HTTP {error.status_code}: {detail})"


def dm_filters(items: list[tuple[str, str, str, Any]], conjunction: str = "and") -> str:
    """A Data Manager query: (filter, operator, type, value) items joined with AND (or OR)."""
    return json.dumps({"filters": {"conjunction": conjunction, "items": [
        {"filter": f, "operator": o, "type": t, "value": v} for f, o, t, v in items]}})
