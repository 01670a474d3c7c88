"""Training to a time budget: when to stop, how far along the learning-rate schedule is, and when to validate.

With `--time-budget 20m` a run ends on time, validation included:
- the run stops taking optimiser steps at the deadline, the budget less a reserve for the final evaluation and the
  checkpoint (the last evaluation's measured cost, at least `RESERVE_SHARE` of the budget), then evaluates and keeps
  the best checkpoint;
- the learning-rate schedule spans the budget: its progress is the share of the time to the deadline that has passed
  (the warm-up still counts steps), so a slower or faster machine than the plan expected still ends at `min_lr`;
- validation takes at most `val_share` of the time: after the first evaluation, at 10% of the budget (or later, when
  the first epoch ends later), an epoch's end brings an evaluation only while the evaluations so far plus one more
  (at the last one's cost) stay within that share of the time spent.
Time is wall time since the run began, over all its sessions (a resumed run counts the time it had already used).
"""

import re
from dataclasses import dataclass

RESERVE_SHARE = 0.02  # of the budget, kept at least for the final evaluation and checkpoint
RESERVE_SECONDS = 5.0  # and at least this: writing the checkpoints
FIRST_VALIDATION = 0.1  # share of the budget after which the first evaluation runs (its cost is then measured)
_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(text: str) -> float | None:
    """ "90s", "20m", "1.5h", "1h30m", "600" (seconds) -> seconds; None when `text` is not such a duration."""
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    return total if total > 0 else None


def format_duration(seconds: float) -> str:
    """Seconds as "12m 30s" or "1h 05m" for messages."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class TimeBudget:
    """The decisions of a run with a time budget of `seconds` (see the module docstring)."""

    seconds: float
    val_share: float = 0.1

    def reserve(self, last_val_cost: float) -> float:
        """Seconds kept for the final evaluation and the checkpoints."""
        return max(last_val_cost, RESERVE_SHARE * self.seconds) + RESERVE_SECONDS

    def deadline(self, last_val_cost: float) -> float:
        """Elapsed seconds at which training steps stop."""
        return max(self.seconds - self.reserve(last_val_cost), 0.0)

    def progress(self, elapsed: float, last_val_cost: float) -> float:
        """How far along the learning-rate schedule is, in [0, 1]."""
        deadline = self.deadline(last_val_cost)
        return 1.0 if deadline <= 0 else min(1.0, elapsed / deadline)

    def should_validate(self, elapsed: float, val_spent: float, last_val_cost: float | None, final: bool) -> bool:
        """Whether an epoch that ends at `elapsed` seconds evaluates, `val_spent` seconds having gone to evaluations."""
        if final:
            return True
        if last_val_cost is None:  # nothing measured yet: the first evaluation after a tenth of the budget
            return elapsed >= FIRST_VALIDATION * self.seconds
        return val_spent + last_val_cost <= self.val_share * elapsed
