"""A daemon thread that calls one function every few seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls `work` every `seconds` in a daemon thread; an error is logged, not raised, so a
    half-written file or a registry hiccup never stops the server from answering."""

    def __init__(self, name: str, work: Callable[[], object], seconds: float) -> None:
        self.name, self.work, self.seconds = name, work, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (not when `seconds` <= 0 or it runs already)."""
        if self.seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.work()
            except Exception:
                log.exception("%s: the periodic refresh failed", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
