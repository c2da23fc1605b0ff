"""The small thread-safe channel by which a front end steers the trainer.

The UI never touches the trainer's state; it only flips these flags. The trainer reads them
between steps (a few attribute reads, no locks on the hot path beyond Event.is_set).
"""

from __future__ import annotations

import threading


class Control:
    """Pause, resume, stop and snapshot-now requests, safe to call from any thread."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._snapshot = threading.Event()
        self.stop_reason = ""

    # --- called by the front end ---
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def toggle_pause(self) -> bool:
        """Pause if running, resume if paused; returns True when now paused."""
        if self._running.is_set():
            self.pause()
            return True
        self.resume()
        return False

    def request_stop(self, reason: str = "stopped by the user") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()
        self._running.set()  # a paused trainer must wake up to stop

    def request_snapshot(self) -> None:
        self._snapshot.set()

    # --- read by the trainer ---
    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def take_snapshot_request(self) -> bool:
        """True once per snapshot request."""
        if self._snapshot.is_set():
            self._snapshot.clear()
            return True
        return False

    def wait_while_paused(self, timeout: float = 0.1) -> None:
        """Block while paused (waking regularly so stop requests are seen)."""
        while not self._running.is_set() and not self._stop.is_set():
            self._running.wait(timeout)
