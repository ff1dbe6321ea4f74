"""Issue 36, findings 1 and 2: a grant lost when a save fails and the process ends, and two holders of the refresh
lease. Each schedule below was the smallest one that broke the code before the fix; they run the real flows in the
deterministic simulation of :mod:`tests.client.grant_sim` (fake store, fake Feishu, a clock per process)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from airflow_provider_feishu_vc.client import grant_process, unsaved_tokens, user_grant
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCTokenStoreError
from airflow_provider_feishu_vc.client.grant_process import GrantInProcess
from airflow_provider_feishu_vc.client.protocol import Sleep, Step
from airflow_provider_feishu_vc.client.stored_tokens import LEASE_SECONDS, RefreshLease, StoredUserTokens
from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE, token_key
from tests.client.grant_sim import CONFIG, Feishu, Process, Program, Simulation, Store, fetches


def once() -> Program:
    return fetches(1, lambda: 1.0)


def after(seconds: float, program: Program) -> Program:
    def delayed(process: Process, caller: int) -> Generator[Step, Any, None]:
        yield Sleep(seconds)
        yield from program(process, caller)

    return delayed


def first_time(process: str, action: str, latency: float, delay: float) -> Callable[[str, str, int], Any]:
    """A store plan: ``process``'s first ``action`` takes ``latency`` and lands ``delay`` late; all else is quick."""
    done: set[str] = set()

    def plan(who: str, what: str, index: int) -> tuple[float, float, str]:
        if who == process and what == action and what not in done:
            done.add(what)
            return latency, delay, "ok"
        return 0.01, 0.0, "ok"

    return plan


def test_1_a_successor_whose_saves_failed_is_saved_when_the_process_closes_and_the_store_is_back() -> None:
    """The store goes down the moment Feishu answers the refresh and stays down 40 s: every save of the refresh
    fails, the task finishes meanwhile. Its close must keep offering the new tokens until the store is back."""
    store = Store()
    feishu = Feishu()

    def outage(now: float) -> None:
        if not store.outages:
            store.outages.append((now, now + 40.0))

    feishu.on_issue = outage
    sim = Simulation(store, feishu)
    sim.add("A", [once()])
    sim.run()
    assert feishu.chain == ["r-0", "r-1"]
    assert sim.violations() == []
    assert store.tokens.final().refresh_token == "r-1"


def test_2a_a_lease_write_landing_late_never_gives_two_holders() -> None:
    """A's lease write takes 1 s and lands 1.5 s late (well inside the 10 s the docs allow): B, reading the lease
    meanwhile, finds it free. Only one of them may refresh (Feishu takes 5 s to answer each)."""
    feishu = Feishu(latency=lambda process, index: 5.0)
    sim = Simulation(Store(plan=first_time("A", "save_lease", latency=1.0, delay=1.5)), feishu)
    sim.add("A", [once()])
    sim.add("B", [once()], at=0.1)
    sim.run()
    assert [token for _, token in feishu.sent] == ["r-0"]
    assert sim.violations() == []


def test_2b_a_host_whose_clock_is_minutes_ahead_respects_a_live_lease() -> None:
    """B holds the lease and waits 10 s for Feishu's answer; A's wall clock runs 5 minutes ahead of B's."""
    feishu = Feishu(latency=lambda process, index: 10.0 if process == "B" else 0.2)
    sim = Simulation(feishu=feishu)
    sim.add("B", [once()])
    sim.add("A", [once()], at=2.0, wall_skew=300.0, origin=-5000.0)
    sim.run()
    assert [token for _, token in feishu.sent] == ["r-0"]
    assert sim.violations() == []


def test_2c_a_sync_and_an_async_caller_of_one_process_share_its_lease() -> None:
    """Two callers of one process (a task's thread and an event loop): the second asks while the first's refresh is
    under way. It must wait for the first, not take the lease over and refresh the same token."""
    feishu = Feishu(latency=lambda process, index: 10.0)
    sim = Simulation(feishu=feishu)
    sim.add("A", [once(), after(3.0, once())])
    sim.run()
    assert [token for _, token in feishu.sent] == ["r-0"]
    assert sim.violations() == []


def test_2d_a_holder_releases_the_lease_only_while_it_is_still_its_own() -> None:
    """A's refresh takes 100 s; B arrives at 65 s. Whatever B does, A's release must not overwrite a lease B took."""
    feishu = Feishu(latency=lambda process, index: 100.0 if process == "A" else 0.2)
    sim = Simulation(feishu=feishu)
    sim.add("A", [once()])
    sim.add("B", [once()], at=65.0)
    sim.run()
    assert sim.store.foreign_releases == 0
    assert sim.violations() == []


def test_2e_two_children_forked_from_one_process_refresh_a_token_once() -> None:
    """Children of one process (a task's multiprocessing pool) each refresh under their own name. Before, both
    carried the parent's: the second took the first's live lease for its own, and while the first's saves were
    failing it refreshed the same token again (20064)."""
    saves = {"P-child1": 0}

    def plan(process: str, action: str, index: int) -> tuple[float, float, str]:
        if process == "P-child1" and action == "save":
            saves[process] += 1
            if saves[process] <= 20:  # the first child's saves fail for about half a minute
                return 0.01, 0.0, "fail"
        return 0.01, 0.0, "ok"

    feishu = Feishu(latency=lambda process, index: 5.0)
    sim = Simulation(Store(plan=plan), feishu)
    parent = sim.add("P", [after(600.0, once())])
    sim.add("P-child1", [once()], at=0.0, forked_from=parent)
    sim.add("P-child2", [once()], at=25.0, forked_from=parent)
    sim.run()
    assert saves["P-child1"] > 20, "the first child's saves never failed: nothing was tested"
    assert [token for _, token in feishu.sent] == ["r-0"]
    assert sim.violations() == []


def test_2f_a_holder_killed_before_its_refresh_hands_the_grant_on_once_its_lease_has_aged() -> None:
    """A takes the lease and is killed (kill -9) before it sends its refresh; B, asking 5 s later, must wait out A's
    lease by its own clock, then refresh the unspent token itself. Also proves that the simulation's clocks reach
    every module whose code ages a lease: with a host clock there, A's lease would never age and B never refresh."""
    from airflow_provider_feishu_vc.client.protocol import HttpRequest

    feishu = Feishu(latency=lambda process, index: 0.2)
    sim = Simulation(feishu=feishu, kill=lambda process, step: process.name == "A" and isinstance(step, HttpRequest))
    sim.add("A", [once()])
    sim.add("B", [after(5.0, once())])
    sim.run()
    assert feishu.sent == [("B", "r-0")]
    assert sim.violations() == []
    assert sim.store.tokens.final().refresh_token == "r-1"


def test_the_stated_bounds_fit_together() -> None:
    """docs/connections.md: a holder sends its refresh within REFRESH_DEADLINE of writing its lease, Feishu answers
    within MAX_REFRESH_ANSWER, the save's retries and its landing follow; all of it must be over before another
    process, having aged the lease out, settles its own and reads the tokens again (the fencing read)."""
    save_retries = sum(user_grant.STORE_RETRY_WAITS)
    assert (
        user_grant.REFRESH_DEADLINE + user_grant.MAX_REFRESH_ANSWER + save_retries + 10.0
        < LEASE_SECONDS + user_grant.lease_bounds(10.0)[1]
    )
    assert user_grant.lease_bounds(10.0) == (2.0, 23.0)
    assert user_grant.REFRESH_DEADLINE > user_grant.lease_bounds(10.0)[1] + 2 * user_grant.MAX_CLAIM_GAP


def test_a_write_delay_from_the_environment_must_be_a_sane_number_of_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    read = user_grant._seconds_from_environment
    monkeypatch.setenv("FEISHU_VC_MAX_STORE_WRITE_DELAY", " 2.5 ")
    assert read("FEISHU_VC_MAX_STORE_WRITE_DELAY", 10.0) == 2.5
    monkeypatch.setenv("FEISHU_VC_MAX_STORE_WRITE_DELAY", "")
    assert read("FEISHU_VC_MAX_STORE_WRITE_DELAY", 10.0) == 10.0
    for junk in ("0", "-1", "nan", "inf", "ten", "1e9"):
        monkeypatch.setenv("FEISHU_VC_MAX_STORE_WRITE_DELAY", junk)
        with pytest.raises(FeishuVCConfigError, match=r"^FEISHU_VC_MAX_STORE_WRITE_DELAY: must be"):
            read("FEISHU_VC_MAX_STORE_WRITE_DELAY", 10.0)


class MemoryStore:
    """A user-token store in memory whose first ``failures`` saves of the tokens fail; its async calls never block."""

    key = "feishu_vc_user_tokens__memory"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tokens: StoredUserTokens | None = None
        self.lease: RefreshLease | None = None

    def load(self) -> StoredUserTokens | None:
        return self.tokens

    def save(self, tokens: StoredUserTokens) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise FeishuVCTokenStoreError("the store is down")
        self.tokens = tokens

    def load_lease(self) -> RefreshLease | None:
        return self.lease

    def save_lease(self, lease: RefreshLease) -> None:
        self.lease = lease

    async def aload(self) -> StoredUserTokens | None:
        return self.load()

    async def asave(self, tokens: StoredUserTokens) -> None:
        self.save(tokens)

    async def aload_lease(self) -> RefreshLease | None:
        return self.load_lease()

    async def asave_lease(self, lease: RefreshLease) -> None:
        self.save_lease(lease)


def unsaved_grant() -> GrantInProcess:
    grant = GrantInProcess("proc")
    grant.unsaved = StoredUserTokens("u-2", time.time() + 7200, 7200, "r-2", None, 2, "r-0")
    grant.lease = RefreshLease.new("proc")
    return grant


def test_1_an_event_loop_offers_an_unsaved_set_in_a_task_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the triggerer: the background saver is a task on the loop, which goes on serving others meanwhile."""
    monkeypatch.setattr(user_grant, "BACKGROUND_WAITS", (0.001,))
    store, grant = MemoryStore(failures=3), unsaved_grant()
    store.lease = grant.lease

    async def main() -> int:
        unsaved_tokens.keep_saving(grant, store, on_loop=True)
        turns = 0
        while grant.unsaved is not None:
            turns += 1  # the loop is free: this coroutine keeps running while the saver waits between attempts
            await asyncio.sleep(0.001)
        return turns

    assert asyncio.run(main()) > 0
    assert store.tokens is not None and store.tokens.generation == 2
    assert store.lease is not None and store.lease.released  # given back once the set was saved


def test_1_a_blocking_process_offers_an_unsaved_set_from_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_grant, "BACKGROUND_WAITS", (0.001,))
    store, grant = MemoryStore(failures=3), unsaved_grant()
    before = set(threading.enumerate())
    unsaved_tokens.keep_saving(grant, store, on_loop=False)
    for saver in set(threading.enumerate()) - before:  # none left if it is done already
        saver.join(timeout=60)
    assert store.tokens is not None and store.tokens.generation == 2 and grant.unsaved is None


def test_1_a_set_that_stays_unsaved_on_close_is_logged_loudly_without_a_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(user_grant, "STORE_RETRY_WAITS", (0.001,))
    monkeypatch.setattr(user_grant, "CLOSE_FLUSH_SECONDS", 0.01)
    store, grant = MemoryStore(failures=10**6), unsaved_grant()
    with caplog.at_level(logging.ERROR):
        assert unsaved_tokens.flush(grant, store) is False
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    text = record.getMessage()
    assert "could NOT be saved" in text and "LOST" in text and user_grant.REGRANT_COMMAND in text
    assert store.key in text and "r-2" not in text and "u-2" not in text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_is_a_process_of_its_own_for_every_grant() -> None:
    """A child of ``os.fork`` (a task's multiprocessing pool, a worker forking its task runner) starts with its
    parent's module state. At the fork a thread of the parent is fetching (it holds the grant's turn and the token
    cache's lock), holds the lease, and has an unsaved set. Before the fix the child refreshed under the parent's
    name (it took the parent's live lease for its own), waited minutes for a turn and for ever on a lock no thread
    of its own held, at exit offered the parent's unsaved set outside the parent's turn, and never registered its own
    exit hook (Airflow's task runner clears the handlers a fork inherits: its unsaved sets were not offered at
    exit)."""
    grant = grant_process.PROCESS.of(CONFIG)
    turn = grant.take_turn()
    assert turn is not None
    grant.lease = RefreshLease.new(grant.process_id)
    parent_grant = unsaved_grant()
    unsaved_tokens._UNSAVED[id(parent_grant)] = (parent_grant, MemoryStore(failures=0))
    fetching = TOKEN_CACHE.thread_lock(token_key(CONFIG))
    fetching.acquire()
    registered = unsaved_tokens._exit_hook_registered
    unsaved_tokens._exit_hook_registered = True  # the parent's own exit hook, which Airflow's task runner clears
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it sees, and leave without running anything of pytest's
            try:
                child = grant_process.PROCESS.of(CONFIG)
                seen = {
                    "name": grant_process.PROCESS.process_id,
                    "grant_name": child.process_id,
                    "turn_free": child.take_turn() is not None,
                    "lease": child.lease is not None,
                    "token_lock_free": TOKEN_CACHE.thread_lock(token_key(CONFIG)).acquire(blocking=False),
                    "unsaved": len(unsaved_tokens._UNSAVED),
                    "exit_hook_registered": unsaved_tokens._exit_hook_registered,
                }
                os.write(write_fd, json.dumps(seen).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reading:
            seen = json.loads(reading.read() or b"{}")
        os.waitpid(pid, 0)
    finally:
        fetching.release()
        grant.lease = None
        grant.end_turn(turn)
        unsaved_tokens._UNSAVED.pop(id(parent_grant), None)
        unsaved_tokens._exit_hook_registered = registered
    assert seen["name"] != grant_process.PROCESS.process_id and seen["grant_name"] == seen["name"]
    assert seen["turn_free"] and not seen["lease"] and seen["token_lock_free"]
    assert seen["unsaved"] == 0 and not seen["exit_hook_registered"]
