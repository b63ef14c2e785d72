"""A local Label Studio server, started for the user on 127.0.0.1 with its data under the output folder.

On first start a user and an API token are created; they are kept in `credentials.json` (mode 0600) next
to the server's data and never printed in full. The data folder is private (0700, its files 0600): Label
Studio's own database holds the token in clear text. The server runs detached, so it outlives the command
that started it; `stop` ends it, after checking that the process named in `server.pid` is still that server
(same start time and command line), so a stale pid file never makes it signal an unrelated process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from al_loop.errors import AlLoopError

log = logging.getLogger(__name__)  # start-up progress at INFO: the CLI shows it (a first start takes a minute)
HOST = "127.0.0.1"
USERNAME = "admin@al-loop.local"


def _banned_subnets() -> list[str]:
    """Label Studio 1.23's default banned subnets (core/utils/io.py: validate_ip), with 127.0.0.1 taken out of
    127.0.0.0/8."""
    default = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
               "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
               "203.0.113.0/24", "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128",
               "::1/128", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
               "2001:0000::/32", "2001:20::/28", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8"]
    loopback = ipaddress.ip_network("127.0.0.0/8").address_exclude(ipaddress.ip_network(f"{HOST}/32"))
    return default + sorted(str(net) for net in loopback)


BANNED_SUBNETS = _banned_subnets()


class ServerError(AlLoopError):
    """The local Label Studio server could not be started, reached or stopped."""


@dataclass(frozen=True)
class Credentials:
    """Login of the local server's admin user. `repr` hides the secrets."""

    username: str
    password: str
    token: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***, token={mask(self.token)})"


def mask(secret: str) -> str:
    """A secret shown safely: its first 4 characters and its length."""
    return f"{secret[:4]}… ({len(secret)} chars)"


@dataclass(frozen=True)
class LocalServer:
    """Where a local server keeps its data, and how to reach it."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "server.pid"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def secure(self) -> None:
        """Create the data folder readable by its owner only (0700), or tighten an existing one and its files
        (0600): Label Studio keeps the admin's API token in clear text in label_studio.sqlite3."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        for path in self.data_dir.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)

    def credentials(self) -> Credentials:
        """The stored credentials, created (0600) on first use."""
        self.secure()
        if self.credentials_path.exists():
            data = json.loads(self.credentials_path.read_text())
            return Credentials(data["username"], data["password"], data["token"])
        credentials = Credentials(USERNAME, secrets.token_urlsafe(16), secrets.token_hex(20))
        descriptor = os.open(self.credentials_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"username": credentials.username, "password": credentials.password,
                       "token": credentials.token}, handle)
        return credentials

    def pid(self) -> int | None:
        """The server's process id if it is alive and is the server started here (see `_is_ours`)."""
        recorded = self._recorded()
        return recorded["pid"] if recorded is not None and _is_ours(recorded, self.data_dir) else None

    def _recorded(self) -> dict[str, Any] | None:
        """What `server.pid` says: {"pid", "started", "cmdline"} (a bare pid from al-loop <= 0.1), or None."""
        try:
            text = self.pid_path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            data = {"pid": data} if isinstance(data, int) else data
            return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
        except json.JSONDecodeError:
            return None

    def remove_stale_pid(self) -> int | None:
        """Remove `server.pid` if it names no process of this server; return the pid it named (None: no file,
        or the server runs)."""
        if not self.pid_path.exists() or self.pid() is not None:
            return None
        recorded = self._recorded()
        self.pid_path.unlink(missing_ok=True)
        return -1 if recorded is None else recorded["pid"]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return "running" if self.healthy() else "starting"

    def start(self, timeout: float = 240.0) -> bool:
        """Start the server unless it runs already; wait until healthy. Returns True if it was started now."""
        if self.pid() is not None:
            if not self.healthy():
                log.info("waiting for Label Studio on %s to answer (it is starting) ...", self.url)
                self._wait_healthy(timeout)
            return False
        if _port_in_use(self.port):
            raise ServerError(f"port {self.port} on {HOST} is already in use by another program; set "
                              "annotator.port to a free port (or stop that program)")
        executable = _label_studio_executable()
        credentials = self.credentials()
        environment = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": credentials.username,
            "LABEL_STUDIO_PASSWORD": credentials.password,
            "LABEL_STUDIO_USER_TOKEN": credentials.token,
            # Label Studio 1.2x disables legacy tokens for new organizations; this server is ours.
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "DJANGO_DEBUG": "false",
            # Label Studio refuses to call its ML backends and webhooks on private or loopback addresses: allow
            # 127.0.0.1 alone (where `al-loop serve` listens), every other address it bans stays banned
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(BANNED_SUBNETS),
        }
        self.secure()
        first = not (self.data_dir / "label_studio.sqlite3").exists()
        log.info("starting Label Studio on %s:%s%s ...", HOST, self.port,
                 " (first start: about a minute of database set-up)" if first else "")
        started = time.monotonic()
        with open(self.log_path, "ab") as output:
            process = subprocess.Popen(
                # --internal-host is the bind address; --host only prefixes generated URLs.
                [executable, "start", "--no-browser", "--internal-host", HOST, "--port", str(self.port)],
                env=environment, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.data_dir, umask=0o077)  # its database holds the token
        self.pid_path.write_text(json.dumps(_identity(process.pid, executable)))
        self.secure()  # the log and the pid file too
        self._wait_healthy(timeout, process)
        self.pid_path.write_text(json.dumps(_identity(process.pid)))  # as it runs (its command line is final now)
        log.info("Label Studio is ready on %s (started in %.0f s; log: %s)", self.url, time.monotonic() - started,
                 self.log_path)
        return True

    def _wait_healthy(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if process is not None and process.poll() is not None:
                raise ServerError(f"Label Studio exited during start-up (code {process.returncode}); see "
                                  f"{self.log_path}")
            time.sleep(1.0)
        raise ServerError(f"Label Studio did not answer on {self.url} within {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server (its whole process group). Returns False if it was not running; a pid file naming
        another process (stale) is removed without signalling anything."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            with contextlib.suppress(ChildProcessError):  # reap it if we are its parent
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return True


def _identity(pid: int, executable: str | None = None) -> dict[str, Any]:
    """What tells this process from a later one that reuses its pid: its start time and command line.

    With `executable`, wait (up to 5 s) until the just-forked child has executed it: before that, its command
    line is still the parent's (`al-loop run ...`), and a pid file recording that would make the running server
    look like another process (then `stop` refuses to stop it and `status` says stopped)."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + 5.0
    while executable is not None and executable not in process.cmdline() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"pid": pid, "started": process.create_time(), "cmdline": process.cmdline()}


def _is_ours(recorded: dict[str, Any], data_dir: Path) -> bool:
    """The recorded process is alive, leads its own process group, and is the same process (same start time
    and command line; for a bare pid of an older al-loop: a Label Studio started in this data folder)."""
    pid = recorded["pid"]
    try:
        process = psutil.Process(pid)
        if os.getpgid(pid) != pid:
            return False
        if "started" in recorded:
            return (abs(process.create_time() - float(recorded["started"])) < 0.01
                    and process.cmdline() == recorded.get("cmdline"))
        return (any("label-studio" in part for part in process.cmdline())
                and Path(process.cwd()).resolve() == data_dir.resolve())
    except (psutil.Error, OSError, ValueError, TypeError):
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((HOST, port)) == 0


def _label_studio_executable() -> str:
    beside_python = Path(sys.executable).with_name("label-studio")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("label-studio")
    if found is None:
        raise ServerError('the Label Studio server is not installed; install the extra: pip install -e ".[server]"')
    return found
