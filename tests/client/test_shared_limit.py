"""Several processes spend one app's rate limit, each with its own budget and no hand-split: the real flows are
driven by a discrete-event simulation (simulated time, seeded randomness), against a limiter shaped as Feishu
documents it (a cap per window, 429 with ``x-ogw-ratelimit-limit`` / ``-reset``).

The figures asserted are the goals of issue #15: at most 1% of requests refused and at least 80% of the limit
used while demand exceeds it. The e2e shows the same with real processes."""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from airflow_provider_feishu_vc.client.budget import AppBudgets
from airflow_provider_feishu_vc.client.errors import FeishuVCError
from airflow_provider_feishu_vc.client.protocol import (
    Flow,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    Sleep,
    call_with_retries,
)

CAP, WINDOW = 100, 3.0  # Feishu's 100 a minute, shrunk as the e2e shrinks it
PER_MINUTE = CAP * 60 / WINDOW  # what the connection is told: the app's real limit, nothing split
POKE_INTERVAL = 5.0
LATENCY = 0.02


@dataclass
class Limiter:
    """Feishu's limit on one API: at most ``CAP`` requests in any ``WINDOW`` (sliding) or per window (fixed)."""

    sliding: bool
    log: deque[float] = field(default_factory=deque)
    window_start: float = 0.0
    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def answer(self, now: float) -> HttpResponse:
        if self.sliding:
            while self.log and self.log[0] <= now - WINDOW:
                self.log.popleft()
            reset = (self.log[0] + WINDOW - now) if self.log else 0.0
        else:
            if now >= self.window_start + WINDOW:
                self.window_start += WINDOW * ((now - self.window_start) // WINDOW)
                self.log.clear()
            reset = self.window_start + WINDOW - now
        if len(self.log) >= CAP:
            self.refused.append(now)
            headers = {"x-ogw-ratelimit-limit": str(CAP), "x-ogw-ratelimit-reset": f"{reset:.3f}"}
            body = {"code": 99991400, "msg": "request trigger frequency limit"}
            return HttpResponse(429, headers, json.dumps(body).encode())
        self.log.append(now)
        self.accepted.append(now)
        return HttpResponse(200, {}, json.dumps({"code": 0, "data": {"status": 1}}).encode())


@dataclass
class Simulation:
    limiter: Limiter
    now: float = 0.0
    events: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    order: itertools.count = field(default_factory=itertools.count)
    failures: int = 0

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self.order), action))

    def run_until(self, end: float) -> None:
        while self.events and self.events[0][0] <= end:
            self.now, _, action = heapq.heappop(self.events)
            action()

    def drive(self, flow: Flow[HttpResponse], then: Callable[[], None], outcome: object = None) -> None:
        """Advance ``flow`` by one step: sleeps and requests take simulated time, the answer is the limiter's."""
        try:
            step = flow.send(outcome)
        except StopIteration:
            then()
            return
        except FeishuVCError:
            self.failures += 1
            then()
            return
        if isinstance(step, Sleep):
            self.at(self.now + step.seconds, lambda: self.drive(flow, then))
        else:
            assert isinstance(step, HttpRequest)
            answer = self.limiter.answer(self.now + LATENCY / 2)
            self.at(self.now + LATENCY, lambda: self.drive(flow, then, answer))


def simulate(
    processes: int,
    pollers_each: int,
    *,
    sliding: bool,
    seconds: float = 240.0,
    start_over: float = POKE_INTERVAL,
    measure_from: float | None = None,
    burst: tuple[float, int] | None = None,
) -> tuple[float, float]:
    """Share of requests refused, and share of the limit used from ``measure_from`` (default: the second half).

    Pollers start at random over the first ``start_over`` seconds. ``burst`` (at, how many): single requests from
    as many fresh processes within a second of ``at``, as workers' first checks arrive."""
    rng = random.Random(20261126)
    sim = Simulation(Limiter(sliding=sliding))
    for _ in range(processes):
        budgets = AppBudgets(PER_MINUTE, clock=lambda: sim.now)
        for _ in range(pollers_each):
            start_poller(sim, budgets, rng, start_over)
    if burst is not None:
        at, how_many = burst
        for _ in range(how_many):
            sim.at(at + rng.uniform(0, 1.0), lambda: send_once(sim))
    sim.run_until(seconds)
    accepted, refused = sim.limiter.accepted, sim.limiter.refused
    assert sim.failures == 0, "a poll ran out of retries"
    settled = seconds / 2 if measure_from is None else measure_from
    used = sum(1 for t in accepted if t >= settled) / (CAP * (seconds - settled) / WINDOW)
    return len(refused) / (len(accepted) + len(refused)), used


def start_poller(sim: Simulation, budgets: AppBudgets, rng: random.Random, start_over: float) -> None:
    request = HttpRequest("GET", "/open-apis/vc/v1/exports/1", budget=budgets.for_api("status"))
    policy = RetryPolicy()  # the connection default: 5 more attempts

    def poll() -> None:
        flow = call_with_retries(request, policy, authenticated=False)
        sim.drive(flow, lambda: sim.at(sim.now + POKE_INTERVAL, poll))

    sim.at(rng.uniform(0, start_over), poll)


@pytest.mark.parametrize("sliding", [True, False], ids=["sliding-window", "fixed-window"])
def test_waits_that_start_over_half_a_minute_use_the_limit_as_soon_as_it_is_reached(sliding: bool) -> None:
    # The e2e's shape: 200 sensors defer over 35 s across two triggerers; the limit is reached near the end of
    # that ramp, and the next minute is measured. The first 429s must not leave the pace low for long.
    refused, used = simulate(2, 100, sliding=sliding, seconds=100, start_over=35.0, measure_from=40.0)
    assert refused <= 0.01, f"{refused:.2%} of requests refused"
    assert used >= 0.80, f"only {used:.0%} of the limit used in the minute after the ramp"


def send_once(sim: Simulation) -> None:
    """A worker's first check: one request from a fresh process; if it runs out of retries, the sensor defers
    (``FeishuVCHook.check_export``), so that is no failure."""
    budgets = AppBudgets(PER_MINUTE, clock=lambda: sim.now)
    request = HttpRequest("GET", "/open-apis/vc/v1/exports/1", budget=budgets.for_api("status"))

    def check() -> Flow[HttpResponse | None]:
        try:
            return (yield from call_with_retries(request, RetryPolicy(), authenticated=False))
        except FeishuVCError:
            return None

    sim.drive(check(), lambda: None)


@pytest.mark.parametrize("sliding", [True, False], ids=["sliding-window", "fixed-window"])
@pytest.mark.parametrize("burst_at", [8.0, 15.0, 22.0])
def test_processes_cut_while_their_waits_were_starting_find_the_limit_again_within_the_minute(
    sliding: bool, burst_at: float
) -> None:
    # What the e2e met on a busy machine: 100 workers' first checks fill the window while the triggerers' waits
    # are still starting, so both triggerers are cut from a pace far under their share. Probing one request per
    # window from there used 36-69% of the next minute; the growing step finds the limit within it. (The burst's
    # own refusals, fresh processes retrying into a full window, are not the pollers' doing: not asserted here.)
    _, used = simulate(2, 100, sliding=sliding, seconds=100, start_over=35.0, measure_from=40.0, burst=(burst_at, 100))
    assert used >= 0.80, f"only {used:.0%} of the limit used in the minute after the ramp"


@pytest.mark.parametrize("sliding", [True, False], ids=["sliding-window", "fixed-window"])
@pytest.mark.parametrize("processes", [2, 3])
def test_processes_share_the_limit_without_a_hand_split(processes: int, sliding: bool) -> None:
    # 200 triggers polling every 5 s want 40 requests a second; the limit allows 33.3.
    refused, used = simulate(processes, 200 // processes, sliding=sliding)
    assert refused <= 0.01, f"{refused:.2%} of requests refused"
    assert used >= 0.80, f"only {used:.0%} of the limit used while demand exceeds it"


def test_a_process_alone_keeps_its_full_pace_and_is_never_refused() -> None:
    # 150 triggers every 5 s (30 a second) fit under the 90% one process spends (30 a second).
    refused, used = simulate(1, 150, sliding=True, seconds=120)
    assert refused == 0 and used >= 0.85
