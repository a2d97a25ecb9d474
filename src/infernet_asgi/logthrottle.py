"""Repeated identical log records, written once per interval with a count.

A flood of one event (accept failures while descriptors run out, request bodies timing out,
connections refused above the cap) must not flood the log: the first of a kind is logged at
once, the rest of the interval only counted, and the count logged when the interval ends::

    throttle = LogThrottle(log, interval=10.0)
    throttle.log(logging.WARNING, "accept:EMFILE", "accept() failed: %s", exc)

When an asyncio loop is running, the count is written by a timer at the end of the interval;
otherwise (another event loop, or none) by the next record of that kind or :meth:`flush`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ("DEFAULT_INTERVAL", "LogThrottle")

DEFAULT_INTERVAL: Final = 10.0
"""Seconds over which repeats of one kind of record are counted rather than logged."""


@dataclass
class _Window:
    level: int
    message: str
    ends: float
    repeats: int = 0
    timer: asyncio.TimerHandle | None = None


class LogThrottle:
    """Logs the first record of each kind at once, and the number of repeats once per interval.

    A kind is any hashable ``key`` the caller chooses (say the message and the errno). While
    repeats keep coming, one summary line per interval reports them; an interval without
    repeats ends the episode, and the next record of that kind is logged at once again.

    Args:
        logger: Where records go.
        interval: Seconds over which repeats are counted.
        clock: Monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._windows: dict[Hashable, _Window] = {}

    def log(self, level: int, key: Hashable, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        """Log ``message % args`` if it is the first of its ``key`` in the interval, else count it."""
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now >= window.ends:
            self._close(key, window, now)
            window = self._windows.get(key)
        text = message % args if args else message
        if window is not None:
            window.repeats += 1
            window.message = text
            return
        self.logger.log(level, text, exc_info=exc_info)
        window = self._windows[key] = _Window(level, text, now + self.interval)
        self._arm(key, window)

    def flush(self) -> None:
        """Write every pending count now (say at shutdown) and forget all kinds."""
        for key, window in list(self._windows.items()):
            if window.timer is not None:
                window.timer.cancel()
            self._report(window)
            del self._windows[key]

    def _close(self, key: Hashable, window: _Window, now: float) -> None:
        """End ``window``: report its repeats, and keep counting for another interval if any."""
        if window.timer is not None:
            window.timer.cancel()
        if window.repeats:
            self._report(window)
            following = self._windows[key] = _Window(
                window.level, window.message, max(now, window.ends) + self.interval
            )
            self._arm(key, following)
        else:
            del self._windows[key]

    def _report(self, window: _Window) -> None:
        if window.repeats:
            self.logger.log(
                window.level,
                "%s (and %d more like it in the last %g s)",
                window.message,
                window.repeats,
                self.interval,
            )

    def _arm(self, key: Hashable, window: _Window) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        window.timer = loop.call_later(window.ends - self._clock(), self._expire, key, window)

    def _expire(self, key: Hashable, window: _Window) -> None:
        if self._windows.get(key) is window:
            window.timer = None
            self._close(key, window, self._clock())
