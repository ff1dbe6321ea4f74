"""The rate budget of one app: requests spaced evenly under Feishu's limit, and paused together after a 429.

Pure bookkeeping (no sleeping): flows ask :meth:`RateBudget.reserve` how long to wait and yield that sleep to
their driver, so the same arithmetic serves the async client (shared by every trigger of a loop) and the sync
client (shared by every thread of a process). Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Share of the app's documented limit that one process spends, leaving room for clock skew and other callers.
RATE_BUDGET_SHARE = 0.9


class RateBudget:
    """Spaces requests evenly so that no window of the limit's length ever sees more than the limit.

    A 429 pauses every caller until Feishu's reset time; callers then line up again at the steady pace.
    """

    def __init__(
        self, per_minute: float, share: float = RATE_BUDGET_SHARE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 60.0 / (per_minute * share)
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take the next free slot; return how many seconds to wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + self.interval
            return slot - now

    def paused(self) -> bool:
        return self._clock() < self._paused_until

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class AppBudgets:
    """The rate budgets of one app: Feishu limits each API on its own (every create kind, the status query and
    the download), so each has its own budget of ``per_minute``."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._budgets: dict[str, RateBudget] = {}
        self._lock = threading.Lock()

    def for_api(self, name: str) -> RateBudget:
        with self._lock:
            budget = self._budgets.get(name)
            if budget is None:
                budget = self._budgets[name] = RateBudget(self.per_minute, clock=self._clock)
            return budget


_PROCESS_BUDGETS: dict[tuple[tuple[str, str, str], float], AppBudgets] = {}
_PROCESS_BUDGETS_LOCK = threading.Lock()


def process_budgets(app_key: tuple[str, str, str], per_minute: float) -> AppBudgets:
    """The budgets every client of one app (and limit) shares in this process: the threads of a worker and the
    triggers of a triggerer alike."""
    with _PROCESS_BUDGETS_LOCK:
        budgets = _PROCESS_BUDGETS.get((app_key, per_minute))
        if budgets is None:
            budgets = _PROCESS_BUDGETS[(app_key, per_minute)] = AppBudgets(per_minute)
        return budgets
