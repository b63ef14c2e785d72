"""The background sync of `al-loop serve`: webhooks only notify it; it runs one sync at a time, after a quiet
moment (debounce), and every `fallback_interval` seconds without any webhook (the cursor pull catches what a
lost webhook did not announce)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from al_loop.errors import AlLoopError, LedgerBusyError
from al_loop.redact import redact

log = logging.getLogger(__name__)
BUSY_RETRY = 2.0  # seconds before retrying a sync while another process holds the ledger


class SyncWorker:
    """Runs `sync` in one background thread when notified (debounced) or when the fallback interval passes."""

    def __init__(self, sync: Callable[[], str], debounce: float = 1.0, fallback_interval: float = 60.0,
                 after: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._after = after  # run after each sync that succeeded (e.g. connecting to Label Studio)
        self.debounce = debounce
        self.fallback_interval = fallback_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_notice = 0.0
        self._thread: threading.Thread | None = None
        self.syncs = 0  # syncs finished (successful or not)
        self.notices = 0  # notifications received (webhooks, and the first sync at start)
        self.last_result: str | None = None
        self.last_error: str | None = None
        self.idle = threading.Event()  # set while nothing is pending or running
        self.idle.set()

    def notify(self) -> None:
        """Ask for a sync (returns at once)."""
        self._last_notice = time.monotonic()
        self.notices += 1
        self._wake.set()
        self.idle.clear()  # after the wake-up: the thread never sees idle and nothing pending at once

    @property
    def pending(self) -> bool:
        return self._wake.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="al-loop-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Stop after the sync under way (if any)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            notified = self._wake.wait(self.fallback_interval or None)
            if self._stop.is_set():
                return
            if notified:
                while (quiet := self._last_notice + self.debounce - time.monotonic()) > 0 and not self._stop.is_set():
                    self._stop.wait(quiet)  # more answers may be on their way: wait until they stop coming
            self._wake.clear()
            self._once()
            if not self._wake.is_set():
                self.idle.set()

    def _once(self) -> None:
        self.idle.clear()
        try:
            self.last_result = self._sync()
            self.last_error = None
            if self._after is not None:
                self._after()
        except LedgerBusyError:
            log.info("the ledger is busy (another al-loop command runs); retrying in %.0f s", BUSY_RETRY)
            self._stop.wait(BUSY_RETRY)
            self._wake.set()
        except AlLoopError as error:
            self.last_error = redact(str(error))
            log.warning("sync failed: %s", self.last_error)
        except Exception as error:  # keep serving; the next webhook or the fallback tries again
            self.last_error = redact(f"{type(error).__name__}: {error}")
            log.error("sync failed: %s", self.last_error)
        finally:
            self.syncs += 1
