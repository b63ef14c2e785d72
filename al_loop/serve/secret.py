"""The shared secret of `al-loop serve`: from the environment variable serve.secret_env, else generated once and
kept in <output_dir>/serve/secret (folder 0700, file 0600), like the local Label Studio's credentials."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from al_loop.config import Config
from al_loop.errors import ConfigError

MIN_LENGTH = 16
HEADER = "X-Al-Loop-Secret"  # the header Label Studio's webhook sends (also accepted on /predict and /setup)
BASIC_USER = "al-loop"  # the ML backend's basic-auth user; its password is the secret


@dataclass(frozen=True)
class Secret:
    """The secret and where it comes from (`source` is safe to print; `repr` hides the value)."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"Secret(***, source={self.source!r})"


def secret_path(config: Config) -> Path:
    return config.output_dir / "serve" / "secret"


def load_secret(config: Config) -> Secret:
    """The secret from serve.secret_env if set (at least 16 characters), else the stored one, created on first use."""
    name = config.serve.secret_env
    value = os.environ.get(name)
    if value:
        if len(value) < MIN_LENGTH:
            raise ConfigError(f"the secret in {name} (serve.secret_env) is shorter than {MIN_LENGTH} characters; "
                              f"export a longer one (e.g. python -c 'import secrets; print(secrets.token_hex(20))') "
                              "or unset it to let al-loop generate one")
        return Secret(value, f"environment variable {name}")
    path = secret_path(config)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it just now
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(24))
    path.chmod(0o600)
    value = path.read_text().strip()
    if len(value) < MIN_LENGTH:
        raise ConfigError(f"the stored secret {path} is shorter than {MIN_LENGTH} characters; delete the file to "
                          "generate a new one (then restart al-loop serve)")
    return Secret(value, str(path))
