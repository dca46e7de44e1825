"""The adaptive concurrency limit admission keeps: Netflix concurrency-limits' Gradient2."""

from __future__ import annotations


class Gradient2:
    """An adaptive concurrency limit: Netflix concurrency-limits' Gradient2.

    Each update compares the latest latency sample with a long-run
    exponential average (``long_window`` samples): while latency stays near
    its long-run level the limit grows by ``queue_size`` per update; as it
    rises above ``tolerance`` times that level the limit shrinks in
    proportion (by at most half per update). ``smoothing`` damps each step.
    When the long-run average sits far above recent samples (load has just
    fallen) it decays faster, so the limit recovers in seconds. A server
    running well below its limit (``in_flight < limit / 2``) leaves the limit
    alone: latency then says nothing about capacity.

    Why Gradient2 and not Vegas or AIMD: Vegas needs the no-load latency,
    which on a shared machine drifts by more than the signal; AIMD needs a
    latency threshold per deployment. Gradient2 only needs "latency is
    rising", and our latency rises as soon as calls queue in the event loop.
    """

    def __init__(
        self,
        *,
        initial: float = 20,
        minimum: float = 8,
        maximum: float = 200,
        smoothing: float = 0.2,
        tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: float = 4,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.value = min(max(initial, minimum), maximum)
        self._smoothing = smoothing
        self._tolerance = tolerance
        self._queue_size = queue_size
        self._decay = 2.0 / (long_window + 1)
        self._long: float | None = None

    def update(self, rtt: float, in_flight: int) -> float:
        """One latency sample (seconds) with the calls in flight when it ended; the new limit."""
        if rtt <= 0:
            return self.value
        long = rtt if self._long is None else self._long + (rtt - self._long) * self._decay
        if long / rtt > 2:  # load just fell: forget the slow past sooner
            long *= 0.95
        self._long = long
        if in_flight < self.value / 2:
            return self.value
        gradient = max(0.5, min(1.0, self._tolerance * long / rtt))
        target = self.value * gradient + self._queue_size
        value = self.value * (1 - self._smoothing) + target * self._smoothing
        self.value = max(self.minimum, min(self.maximum, value))
        return self.value
