"""A deterministic simulation of the processes of a deployment sharing one user grant: a fake store whose writes
land late, fail, or land although they were reported failed; a fake Feishu that spends each refresh token once;
a clock of its own for every process (skewed wall clock, monotonic clock with its own origin); kills at any step.

It drives the REAL flows of :mod:`airflow_provider_feishu_vc.client.user_grant` (through the real
:class:`~airflow_provider_feishu_vc.client.token_cache.TokenCache`): every step a flow yields is performed by the
simulation at simulated time, so a schedule of hours runs in milliseconds and the same seed gives the same run.
What a process owns process-wide (its token cache, its grant state, its name in leases) is switched in before each
of its steps, and the ``time`` module of the client core reads the stepping process's clocks.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import random
import time as real_time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_feishu_vc.client import stored_tokens, tokens, user_grant
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCError, FeishuVCTokenStoreError
from airflow_provider_feishu_vc.client.protocol import (
    Driving,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    SharedUserTokens,
    Sleep,
    Step,
)
from airflow_provider_feishu_vc.client.token_cache import TokenCache

try:  # where this process's state of each grant lives (its own module since 2026-12-05; user_grant before)
    from airflow_provider_feishu_vc.client import grant_process as grants_home
except ImportError:
    grants_home = user_grant
try:  # the OAuth endpoint's exchanges (their own module since 2026-12-05, stop 42; user_grant before)
    from airflow_provider_feishu_vc.client import user_oauth
except ImportError:
    user_oauth = user_grant

CONFIG = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_sim", app_secret="s", refresh_token="r-0")
POLICY = RetryPolicy(max_retries=0)
#: The longest write delay the simulated deployment is built for (the default, 10 s).
SIMULATED_MAX_WRITE_DELAY = 10.0
#: Simulated wall clock of a process without skew at simulated time 0 (a fixed epoch: runs repeat exactly).
EPOCH = 1_800_000_000.0


class _Clocks:
    """Stands in for the ``time`` module inside the client core: the stepping process's clocks."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim

    def time(self) -> float:
        return EPOCH + self._sim.now + self._sim.stepping.wall_skew

    def monotonic(self) -> float:
        return self._sim.now + self._sim.stepping.monotonic_origin

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


@dataclass(order=True)
class _Write:
    lands: float
    seq: int
    value: Any = field(compare=False)
    writer: str = field(compare=False)


@dataclass
class Register:
    """One Variable: the value of the write that landed last (writes land in the order of their landing)."""

    writes: list[_Write] = field(default_factory=list)

    def at(self, moment: float) -> Any:
        landed = [w for w in self.writes if w.lands <= moment]
        return max(landed).value if landed else None

    def final(self) -> Any:
        return max(self.writes).value if self.writes else None


#: (process name, action, how many store operations that process did before) -> (answer latency, write delay,
#: outcome: "ok", "fail" (reported failed, not landed) or "lost" (reported failed, landed anyway)).
StorePlan = Callable[[str, str, int], tuple[float, float, str]]


def calm(process: str, action: str, index: int) -> tuple[float, float, str]:
    return 0.01, 0.0, "ok"


@dataclass
class Store:
    plan: StorePlan = calm
    tokens: Register = field(default_factory=Register)
    lease: Register = field(default_factory=Register)
    outages: list[tuple[float, float]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: Release writes that replaced a lease other than the writer's own (finding 2d).
    foreign_releases: int = 0

    def down(self, moment: float) -> bool:
        return any(start <= moment < end for start, end in self.outages)

    def perform(self, process: str, action: str, value: Any, now: float, seq: int) -> tuple[float, Any]:
        """(seconds the call takes, its outcome: a value, or an error to throw into the flow)."""
        index = self.counts.get(process, 0)
        self.counts[process] = index + 1
        latency, delay, outcome = self.plan(process, action, index)
        if self.down(now):
            return latency, FeishuVCTokenStoreError(f"simulated outage: {action}")
        register = self.lease if "lease" in action else self.tokens
        if action.startswith("save"):
            if outcome != "fail":
                if "lease" in action and _is_release(value):
                    current = register.at(now)
                    if current is not None and current.holder != value.holder:
                        self.foreign_releases += 1
                register.writes.append(_Write(now + delay, seq, value, process))
            return latency, (None if outcome == "ok" else FeishuVCTokenStoreError(f"simulated failure: {action}"))
        if outcome != "ok":
            return latency, FeishuVCTokenStoreError(f"simulated failure: {action}")
        return latency, register.at(now + latency / 2)


def _is_release(lease: Any) -> bool:
    return bool(getattr(lease, "released", False)) or getattr(lease, "until", None) == 0.0


@dataclass
class Feishu:
    """The OAuth endpoint: each refresh token works once and has exactly one successor."""

    latency: Callable[[str, int], float] = lambda process, index: 0.2
    spent: set[str] = field(default_factory=set)
    #: Every refresh request: (process, refresh token sent).
    sent: list[tuple[str, str]] = field(default_factory=list)
    #: The successor of each refresh token Feishu accepted, in order; the last one is the grant's live token.
    chain: list[str] = field(default_factory=lambda: ["r-0"])
    #: Per issued token: the process it went to.
    issued_to: dict[str, str] = field(default_factory=dict)
    on_issue: Callable[[float], None] | None = None
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def refresh(self, process: str, request: HttpRequest, now: float) -> tuple[float, HttpResponse]:
        body = dict(request.json_body or {})
        sent = str(body.get("refresh_token"))
        latency = self.latency(process, sum(1 for p, _ in self.sent if p == process))
        self.sent.append((process, sent))
        if sent in self.spent or sent != self.chain[-1]:
            self.spent.add(sent)
            envelope = {"code": 20064, "error": "invalid_grant", "error_description": "The refresh token has been used"}
            return latency, HttpResponse(400, {"content-type": "application/json"}, json.dumps(envelope).encode())
        self.spent.add(sent)
        number = next(self._serial)
        successor = f"r-{number}"
        self.chain.append(successor)
        self.issued_to[successor] = process
        if self.on_issue is not None:
            self.on_issue(now)
        envelope = {
            "code": 0,
            "access_token": f"u-{number}",
            "expires_in": 7200,
            "refresh_token": successor,
            "refresh_token_expires_in": 30 * 86400,
        }
        return latency, HttpResponse(200, {"content-type": "application/json"}, json.dumps(envelope).encode())


@dataclass
class Process:
    """One worker or triggerer process: its own clocks, token cache and grant state, and its callers."""

    name: str
    wall_skew: float = 0.0
    monotonic_origin: float = 0.0
    cache: TokenCache = field(default_factory=TokenCache)
    grants: Any = None
    alive: bool = True
    #: Refresh tokens this process sent, in order.
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    callers: list[_Caller] = field(default_factory=list)
    #: The last access token each caller was handed (the next fetch says Feishu rejected it).
    last: dict[int, str] = field(default_factory=dict)
    #: The process this one is a child of (``os.fork`` at its first step): it starts with a copy of its state.
    forked_from: Process | None = None
    started: bool = False


@dataclass
class _Caller:
    process: Process
    driving: Driving[Any]
    background: bool = False
    done: bool = False


Program = Callable[[Process, int], Generator[Step, Any, None]]


def fetches(count: int, pause: Callable[[], float]) -> Program:
    """A caller that asks for a token ``count`` times, each time saying Feishu rejected the one it has (so that
    every ask presses for a refresh), with ``pause`` seconds between asks."""

    def program(process: Process, caller: int) -> Generator[Step, Any, None]:
        for _ in range(count):
            try:
                token = yield from process.cache.renew(CONFIG, POLICY, stale=process.last.get(caller), shared=True)
                process.last[caller] = token.value
            except FeishuVCError as error:
                process.errors.append(f"{type(error).__name__}: {error}")
            yield Sleep(pause())

    return program


class Simulation:
    """Processes started at given times run their programs; each then closes gracefully (the close flush) unless
    it was killed. ``kill`` is asked before every step whether to kill the stepping process there."""

    def __init__(
        self,
        store: Store | None = None,
        feishu: Feishu | None = None,
        kill: Callable[[Process, Step], bool] = lambda process, step: False,
        max_events: int = 200_000,
    ) -> None:
        self.store = store or Store()
        self.feishu = feishu or Feishu()
        self.kill = kill
        self.now = 0.0
        self.max_events = max_events
        self.processes: list[Process] = []
        self.stepping = Process("nobody")
        self._queue: list[tuple[float, int, _Caller]] = []
        self._seq = itertools.count()
        #: How often a flow handed an unsaved successor to its driver's background saver.
        self.kept_saving = 0
        #: Refresh tokens that left Feishu for a process that was killed before any write of them was issued.
        self.lost_by_kill: set[str] = set()

    # -- building a run ----------------------------------------------------------------------------------------

    def add(
        self, name: str, programs: list[Program], *, at: float = 0.0, wall_skew: float = 0.0, origin: float = 0.0,
        forked_from: Process | None = None,
    ) -> Process:  # fmt: skip
        """A process started at ``at``; with ``forked_from``, a child that process forks then (its host's clocks,
        a copy of its token cache and grant state, as ``os.fork`` leaves them once its at-fork hooks ran)."""
        if forked_from is not None:
            wall_skew, origin = forked_from.wall_skew, forked_from.monotonic_origin
        process = Process(name, wall_skew=wall_skew, monotonic_origin=origin, forked_from=forked_from)
        grants_class = getattr(grants_home, "ProcessGrants", None)
        process.grants = grants_class() if grants_class is not None else f"{name}-{random.Random(name).random()}"
        for index, program in enumerate(programs):
            self._start(process, self._closing(process, program(process, index), index), at)
        self.processes.append(process)
        return process

    def _closing(self, process: Process, body: Generator[Step, Any, None], index: int) -> Generator[Step, Any, None]:
        """The program, then (for the last caller to end) what closing the client does."""
        yield from body
        process.callers[index].done = True
        if all(c.done for c in process.callers if not c.background):
            flush = getattr(user_grant, "flush_on_close", None)
            if flush is not None:
                yield from flush(CONFIG)
            process.alive = False  # the process ends: its background savers end with it

    def _start(self, process: Process, flow: Generator[Step, Any, Any], at: float, background: bool = False) -> None:
        caller = _Caller(process, Driving(flow), background=background)
        process.callers.append(caller)
        heapq.heappush(self._queue, (at, next(self._seq), caller))

    # -- running it ----------------------------------------------------------------------------------------------

    def run(self) -> Simulation:
        with self._installed():
            events = 0
            while self._queue:
                events += 1
                if events > self.max_events:
                    raise AssertionError("the simulation did not end: a flow loops")
                self.now, _, caller = heapq.heappop(self._queue)
                process = caller.process
                if not process.alive:
                    continue
                if not process.started:
                    process.started = True
                    if process.forked_from is not None:
                        self._fork(process.forked_from, process)
                self._switch_to(process)
                step = caller.driving.next_step()
                if step is None:
                    continue
                if self.kill(process, step):
                    self._killed(process)
                    continue
                delay = self._perform(caller, step)
                heapq.heappush(self._queue, (self.now + delay, next(self._seq), caller))
        return self

    @contextmanager
    def _installed(self) -> Iterator[None]:
        clocks = _Clocks(self)
        clocked = (user_grant, grants_home, user_oauth, stored_tokens, tokens)  # every core module that reads a clock
        saved = {module: module.time for module in clocked}  # type: ignore[attr-defined]
        prefix = getattr(stored_tokens, "_PROCESS_LEASE_PREFIX", None)
        grants = getattr(grants_home, "PROCESS", None)
        for module in saved:
            module.time = clocks  # type: ignore[attr-defined]
        # The bounds a deployment runs with by default (the tests' environment shortens them for real processes).
        names = ("MAX_WRITE_DELAY", "MAX_CLAIM_GAP", "LEASE_SETTLE")
        bounds = {name: getattr(user_grant, name, None) for name in names}
        if hasattr(user_grant, "lease_bounds"):
            user_grant.MAX_WRITE_DELAY = SIMULATED_MAX_WRITE_DELAY  # type: ignore[attr-defined]
            user_grant.MAX_CLAIM_GAP, user_grant.LEASE_SETTLE = user_grant.lease_bounds(SIMULATED_MAX_WRITE_DELAY)
        try:
            yield
        finally:
            for module, original in saved.items():
                module.time = original  # type: ignore[attr-defined]
            for name, value in bounds.items():
                if value is not None:
                    setattr(user_grant, name, value)
            if prefix is not None:
                stored_tokens._PROCESS_LEASE_PREFIX = prefix  # type: ignore[attr-defined]
            if grants is not None:
                grants_home.PROCESS = grants  # type: ignore[attr-defined]

    def _switch_to(self, process: Process) -> None:
        self.stepping = process
        if isinstance(process.grants, str):  # a release without per-process grant state: its name in leases
            stored_tokens._PROCESS_LEASE_PREFIX = process.grants  # type: ignore[attr-defined]
        else:
            grants_home.PROCESS = process.grants  # type: ignore[attr-defined]

    def _perform(self, caller: _Caller, step: Step) -> float:
        process = caller.process
        driving = caller.driving
        if isinstance(step, Sleep):
            return step.seconds
        if isinstance(step, SharedUserTokens):
            if step.action == "keep_saving":
                self.kept_saving += 1
                background = getattr(user_grant, "save_in_background", None)
                if background is not None:
                    self._start(process, background(step.value), self.now, background=True)
                return 0.0
            latency, outcome = self.store.perform(process.name, step.action, step.value, self.now, next(self._seq))
            driving.outcome = outcome
            return latency
        if isinstance(step, HttpRequest):
            sent = str((step.json_body or {}).get("refresh_token"))
            process.sent.append(sent)
            latency, response = self.feishu.refresh(process.name, step, self.now)
            driving.outcome = response
            return latency
        return 0.0

    @staticmethod
    def _fork(parent: Process, child: Process) -> None:
        """What ``os.fork`` leaves the child: the parent's module state, then its at-fork hooks."""
        child.cache._tokens = dict(parent.cache._tokens)
        child.grants = copy.copy(parent.grants)
        if hasattr(child.grants, "_grants"):  # a copy of each grant's state, as the child's memory is a copy
            child.grants._grants = {key: copy.copy(grant) for key, grant in parent.grants._grants.items()}
            for grant in child.grants._grants.values():
                grant._answered = set(grant._answered)
        for state in (child.cache, child.grants):
            forked = getattr(state, "forked", None)
            if forked is not None:
                forked()

    def _killed(self, process: Process) -> None:
        """kill -9: nothing of the process runs again. A successor only it knew and that no write carries is lost
        (the window the docs state: between Feishu's answer and the first save attempt)."""
        process.alive = False
        live = self.feishu.chain[-1]
        written = {getattr(w.value, "refresh_token", None) for w in self.store.tokens.writes}
        if self.feishu.issued_to.get(live) == process.name and live not in written:
            self.lost_by_kill.add(live)

    # -- what must hold ------------------------------------------------------------------------------------------

    def violations(self) -> list[str]:
        """The properties the lease and the saves promise, as broken by this run (empty: none)."""
        found: list[str] = []
        live = self.feishu.chain[-1]
        excused = bool(self.lost_by_kill)
        final = self.store.tokens.final()
        stored = final.refresh_token if final is not None else "r-0"
        if not excused and stored != live:
            found.append(f"lost grant: the store ends with {stored}, Feishu's live refresh token is {live}")
        counts: dict[str, int] = {}
        for _, token in self.feishu.sent:
            counts[token] = counts.get(token, 0) + 1
        twice = sorted(token for token, n in counts.items() if n > 1)
        if twice and not excused:
            found.append(f"refresh tokens sent to Feishu more than once: {twice}")
        for process in self.processes:
            again = sorted({t for t in process.sent if process.sent.count(t) > 1})
            if again:
                found.append(f"{process.name} sent the same refresh token twice: {again}")
        if self.store.foreign_releases:
            found.append(f"{self.store.foreign_releases} release(s) overwrote another process's lease")
        return found
