"""The rate budget of one app's API: requests paced under Feishu's limit, shared by every caller of a process, and
slowed down when other processes spend the same limit.

Pure bookkeeping (no sleeping): flows ask :meth:`RateBudget.reserve` how long to wait and yield that sleep to
their driver, so the same arithmetic serves the async client (shared by every trigger of a loop) and the sync
client (shared by every thread of a process). Times are ``time.monotonic()`` seconds.

Several processes (triggerers, workers) spend one app's limit, and nothing they all run can count for them
cheaply, so each process learns its share from Feishu's own signal, as TCP does from lost packets:

- a 429 cuts the pace to 80% of what the process really sent, at most once per window (the window still holds
  what was sent before the cut, so the refusals that follow within it say nothing new);
- accepted requests raise it again by a step per window's worth of them: a quarter of the gap to the pace before
  the cut, or a probing step that starts at one request per window and grows 1.25x every window, whichever is
  larger; past the pace before the cut, where the limit was last met, the probing starts over at one request.

So a process returns quickly to where it was refused, probes gently there, and faster the longer Feishu accepts
everything (much as TCP CUBIC does). The growing step matters when the last cut came early, while waits were
still starting and the process sent little: one request per window would take dozens of windows to find the limit
again. Processes converge on a fair split just under the limit; a process alone keeps its full pace. The window's
length and cap come from the 429 (``x-ogw-ratelimit-limit``) and the connection's per-minute figure, so a test that
shrinks Feishu's window behaves as Feishu does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Share of the app's documented limit that one process spends, leaving room for clock skew and other callers.
RATE_BUDGET_SHARE = 0.9
#: What a 429 leaves of the pace the process really sent.
SLOWDOWN_AFTER_REFUSAL = 0.8
#: Below the pace it was cut from, a process wins back this share of the gap per window's worth of accepted
#: requests (at least one request per window): close to where it was within a few windows.
RECOVERY_SHARE = 0.25
#: Each window's worth of accepted requests multiplies the probing step (one request per window at first) by
#: this much.
PROBE_GROWTH_PER_WINDOW = 1.25
#: How many recent slots tell the pace a process really sends at.
PACE_SAMPLES = 64


@dataclass(frozen=True)
class Slot:
    """A reserved place in the budget: wait ``wait`` seconds, then send. ``number`` tells later answers apart
    from the ones already under way when the pace was cut."""

    wait: float
    number: int


class RateBudget:
    """Spaces requests evenly under the limit and adapts the pace to what Feishu refuses.

    A 429 pauses every caller until Feishu's reset time and cuts the pace; accepted requests raise it back
    towards ``per_minute * share``.
    """

    def __init__(
        self, per_minute: float, share: float = RATE_BUDGET_SHARE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.most = per_minute * share
        self.pace = self.most
        self._window_cap = per_minute  # requests per window; Feishu's window is a minute until a 429 says more
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._issued = 0
        self._issued_at_cut = 0
        self._cut_at = float("-inf")
        self._pace_before_cut = 0.0
        self._probe = 0.0
        self._recent: deque[float] = deque(maxlen=PACE_SAMPLES)
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        return 60.0 / self.pace

    @property
    def window_seconds(self) -> float:
        """How long Feishu's window lasts: a minute, or shorter where a 429 says the cap is smaller."""
        return 60.0 * self._window_cap / self.per_minute

    @property
    def least(self) -> float:
        """One request per window: the slowest pace, so a process never stops asking (never above ``most``)."""
        return min(self.per_minute / self._window_cap, self.most)

    def reserve(self) -> Slot:
        """Take the next free slot; return how long to wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + self.interval
            self._issued += 1
            self._recent.append(slot)
            return Slot(slot - now, self._issued)

    def paused(self) -> bool:
        return self._clock() < self._paused_until

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def accepted(self, slot: Slot) -> None:
        """Feishu took the request sent in ``slot``: per window's worth of these, raise the pace by a quarter of
        the gap to the pace before the last cut or by the probing step, whichever is larger (spread over the
        window's requests); the step grows every window and starts over once that pace is passed."""
        with self._lock:
            if self.pace >= self.most or slot.number <= self._issued_at_cut:
                return
            per_window = self.pace * self._window_cap / self.per_minute
            self._probe = max(self.least, self._probe * PROBE_GROWTH_PER_WINDOW ** (1 / per_window))
            step = max(self._probe, RECOVERY_SHARE * (self._pace_before_cut - self.pace))
            crossing = self.pace < self._pace_before_cut <= self.pace + step / per_window
            self.pace = min(self.most, self.pace + step / per_window)
            if crossing:
                self._probe = 0.0  # the last refusal came near here: probe gently first

    def refused(self, slot: Slot, reset: float, window_cap: float | None = None) -> None:
        """Feishu answered 429 to ``slot``: pause every caller until ``reset`` and, unless the pace was already cut
        after this request left or within the last window, cut it to a share of what this process really sent."""
        with self._lock:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + reset)
            if window_cap and window_cap >= 1:
                self._window_cap = max(1.0, min(window_cap, self.per_minute))
            if slot.number <= self._issued_at_cut or now < self._cut_at + self.window_seconds:
                return  # the window still holds what was sent before the cut
            self._issued_at_cut, self._cut_at = self._issued, now
            self._pace_before_cut = min(self.pace, self._sent_pace())
            self.pace = max(self.least, SLOWDOWN_AFTER_REFUSAL * self._pace_before_cut)
            self._probe = 0.0

    def _sent_pace(self) -> float:
        """Requests per minute over the recent slots (the configured pace until there are two)."""
        if len(self._recent) < 2 or self._recent[-1] <= self._recent[0]:
            return self.pace
        return 60.0 * (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])


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
