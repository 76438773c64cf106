"""Where an engine step's time goes: scheduling (CPU); `forward`, launching the model and the sampling
and waiting for the device's results; `finish`, output processing (the previous step's deferred
reports, run while the device works, and this step's appends). Kept per step kind so the benchmark can
put the scheduler's CPU cost beside the model step time."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PhaseTotals:
    steps: int = 0
    reqs: int = 0
    schedule: float = 0.0
    forward: float = 0.0
    finish: float = 0.0

    def per_step_us(self) -> dict[str, float]:
        n = max(self.steps, 1)
        return {"schedule": 1e6 * self.schedule / n, "forward": 1e6 * self.forward / n,
                "finish": 1e6 * self.finish / n, "batch": self.reqs / n}


@dataclass(slots=True)
class StepTimings:
    prefill: PhaseTotals = field(default_factory=PhaseTotals)
    decode: PhaseTotals = field(default_factory=PhaseTotals)

    def add(self, is_prefill: bool, reqs: int, steps: int, schedule: float, forward: float, finish: float) -> None:
        """One host round of `steps` device steps (more than one: a decode window) over `reqs` requests."""
        t = self.prefill if is_prefill else self.decode
        t.steps += steps
        t.reqs += reqs * steps
        t.schedule += schedule
        t.forward += forward
        t.finish += finish

    def reset(self) -> None:
        self.prefill, self.decode = PhaseTotals(), PhaseTotals()
