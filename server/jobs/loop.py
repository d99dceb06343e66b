"""A job's background thread: `start()`, `wake()` it early, `stop()` it and wait — one lifecycle for
the Beckn worker and the outbox drainer. The job supplies `_run`, which loops until `_stop` is set
and waits on `_wake` between passes."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class BackgroundLoop(ABC):
    thread_name = "derflex-job"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
            self._started()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._stopped()

    def wake(self) -> None:
        self._wake.set()

    @abstractmethod
    def _run(self) -> None:
        """The job's loop: passes until `_stop` is set, waiting on `_wake` between them."""

    def _started(self) -> None:
        """After the thread started (e.g. say so in the log)."""

    def _stopped(self) -> None:
        """After the thread stopped (e.g. release what the loop used)."""
