"""One place that decides what may be shown: URLs lose their credentials, token-shaped values are hidden.

Used by error messages, CLI output and the params logged to MLflow, so a password in a tracking URI or a token
pasted where a variable name belongs never reaches a terminal, a log or a tracking server.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

HIDDEN = "***"
# query/fragment parameters whose value is a credential (?token=, ?access_token=, ?api_key=, ?X-Amz-Signature=...)
_SECRET_NAME = re.compile(r"token|key|secret|pass|pwd|auth|sig|credential|session|cookie|code", re.IGNORECASE)
_PAIR = re.compile(r"([?&;#])([^=&;#]*)=([^&;#]*)")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]]")  # no trailing punctuation
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def redact_url(url: str) -> str:
    """The URL without credentials: `user:password@` becomes `***@`, secret query/fragment values `***`;
    everything else is kept as written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        authority = HIDDEN + "@" + authority.rpartition("@")[2]
    return f"{scheme}://{authority}{_PAIR.sub(_hide_pair, tail)}"


def _hide_pair(match: re.Match[str]) -> str:
    """`token=x` -> `token=***` when the name says it is a credential."""
    lead, name, _ = match.groups()
    return f"{lead}{name}={HIDDEN}" if _SECRET_NAME.search(unquote(name)) else match.group(0)


def redact(text: str) -> str:
    """`text` with every URL in it redacted (see `redact_url`)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def looks_like_token(value: str) -> bool:
    """Whether a value looks like a secret rather than a name: long hex (legacy API tokens), a JWT-like
    `xxx.yyy.zzz` (personal access tokens), or a long run of letters and digits mixed. Environment variable
    names such as LABEL_STUDIO_API_KEY are words joined by underscores, so they do not."""
    if any(re.search(r"\d", run) for run in _HEX.findall(value)):
        return True
    if any(any(_random_looking(s) for s in match.split(".")) for match in _JWT_LIKE.findall(value)):
        return True
    return any(_random_looking(word) for word in re.split(r"[_\W]+", value))


def _random_looking(word: str) -> bool:
    """Letters and digits mixed over 16 characters or more: not a word of a name."""
    return len(word) >= 16 and any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def redact_value(value: str) -> str:
    """A config value safe to log: hidden if a word of it looks like a token (paths aside), else with its URLs
    redacted."""
    if any("/" not in word and looks_like_token(word) for word in value.split()):
        return HIDDEN
    return redact(value)
