"""The progress line on stderr: which step the run is at, and about how long is left."""

from __future__ import annotations

import sys
import time


class Progress:
    """A line on stderr that says where the run is (rewritten in a terminal, appended if not)."""

    def __init__(self, total: int, seconds: float = 0.0) -> None:
        self.total = total
        self.seconds = seconds  # what all the steps are expected to take
        self.done = 0
        self.expected_done = 0.0
        self._last = 0.0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._width = 0

    def step(self, what: str, seconds: float = 1.0) -> None:
        """A new step starts; it is expected to take ``seconds``."""
        self.done += 1
        self.expected_done += self._last
        self._last = seconds
        elapsed = time.monotonic() - self.start
        left = ""
        if self.expected_done > 0 and self.seconds > self.expected_done:
            # Scale what the plan says is left by how the plan has held so far.
            pace = max(1.0, elapsed / self.expected_done)
            left = f", ~{_clock((self.seconds - self.expected_done) * pace)} left"
        self.show(f"[{self.done:>2}/{self.total}] {_clock(elapsed)}{left}  {what}")

    def show(self, line: str) -> None:
        """Show a line: rewritten in place in a terminal."""
        if self.tty:
            pad = max(0, self._width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def say(self, message: str) -> None:
        """A message that stays, above the progress line."""
        if self.tty and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            self._width = 0
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        """Clear the progress line."""
        self.say(f"done in {_clock(time.monotonic() - self.start)}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"
