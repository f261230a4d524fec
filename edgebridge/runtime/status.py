"""One-line live status of a running stream, redrawn in place on a terminal and silent when stderr is piped.

A person watching ``edgebridge stream`` wants to see at a glance that samples arrive at the right rate, that
windows are scored and not dropped, and how long a prediction takes; a program reading the JSONL on stdout, or a
systemd journal, wants none of that noise. So the line is drawn only when the stream is a TTY.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import IO

CLEAR_LINE = "\r\033[K"


@dataclass
class StatusSnapshot:
    """What the status line shows. ``rate_hz`` is the measured input sample rate (per channel)."""

    elapsed_s: float
    rate_hz: float
    windows: int
    scored: int
    flagged: int
    drops: int
    reconnects: int
    latency_ms_p50: float
    latency_ms_p99: float
    last_label: str | None = None


def _ms(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.1f}"


def format_status(s: StatusSnapshot) -> str:
    """The status text, e.g. ``12s  124.9 Hz  win 10 (scored 9, flagged 1)  drops 0  reconn 0  p50 3.1 p99 4.0 ms``."""
    last = f"  last {s.last_label}" if s.last_label else ""
    return (f"{s.elapsed_s:5.0f}s  {s.rate_hz:7.1f} Hz  win {s.windows} (scored {s.scored}, flagged {s.flagged})  "
            f"drops {s.drops}  reconn {s.reconnects}  p50 {_ms(s.latency_ms_p50)} p99 {_ms(s.latency_ms_p99)} ms"
            f"{last}")


class StatusLine:
    """Redraws ``format_status`` at most every ``interval_s`` on ``stream`` (default stderr), only on a TTY.

    Args:
        stream: where to draw; None means ``sys.stderr``.
        interval_s: minimum time between redraws.
        enabled: force on/off; None draws only when ``stream.isatty()``.
    """

    def __init__(self, stream: IO[str] | None = None, interval_s: float = 0.5, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self.interval_s = interval_s
        self._last = -math.inf
        self._drawn = False

    def update(self, snapshot: StatusSnapshot, force: bool = False) -> bool:
        """Redraw if due (or forced); returns whether it drew."""
        if not self.enabled:
            return False
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return False
        self._last = now
        self.stream.write(CLEAR_LINE + format_status(snapshot))
        self.stream.flush()
        self._drawn = True
        return True

    def close(self, snapshot: StatusSnapshot | None = None) -> None:
        """Draw the final state (when given) and end the line so later output starts on a fresh one."""
        if not self.enabled:
            return
        if snapshot is not None:
            self.update(snapshot, force=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
