"""A circuit breaker per backend: closed -> open after N consecutive failures -> half-open after a
cool-down, when exactly one request probes it -> closed on the probe's success, open again on its failure."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    failures_to_open: int = 5
    cooldown: float = 10.0
    state: str = CLOSED
    failures: int = 0                     # consecutive
    opened_at: float = 0.0
    probing: bool = False                 # half-open: the one probe is in flight
    clock: object = field(default=time.monotonic, repr=False)

    def usable(self) -> bool:
        """Whether a request may go there now (without claiming the half-open probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return self.clock() - self.opened_at >= self.cooldown
        return not self.probing

    def admit(self) -> None:
        """A request goes there now; from open (cooled down) or half-open it is the probe."""
        if self.state != CLOSED:
            self.state, self.probing = HALF_OPEN, True

    def success(self) -> None:
        self.state, self.failures, self.probing = CLOSED, 0, False

    def failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failures_to_open:
            self.state, self.opened_at, self.probing = OPEN, self.clock(), False

    def release(self) -> None:
        """The request ended with neither verdict (cancelled, or the client's own error): free the probe."""
        self.probing = False

    def view(self) -> dict:
        shown = HALF_OPEN if self.state == OPEN and self.usable() else self.state
        return {"state": shown, "consecutive_failures": self.failures}
