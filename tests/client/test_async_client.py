"""The async client: same rules as the sync one, plus what it shares per app inside one event loop."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt

import pytest

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.async_client import (
    STATUS_CHECKERS,
    AsyncFeishuVCClient,
    StatusQueue,
    join_session,
    open_sessions,
    shared_client,
)
from airflow_provider_feishu_vc.client.budget import RateBudget
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.client.protocol import wait_for_budget
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import FAST_RETRIES

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"


@pytest.fixture
def config(config: ClientConfig) -> ClientConfig:
    """The emulator's app with a high rate budget: pacing is tested on its own below."""
    return dataclasses.replace(config, rate_limit_per_minute=60_000)


async def test_create_poll_and_download(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config, policy=FAST_RETRIES) as client:
        export_task_id = await client.create_export(
            "meeting_list", start_time=NOW - dt.timedelta(hours=5), end_time=NOW
        )
        assert (await client.get_export(export_task_id)).status is ExportStatus.PROCESSING
        await asyncio.sleep(0.4)
        task = await client.get_export(export_task_id)
        assert task.status is ExportStatus.DONE
        async with client.open_download(task.file_token, chunk_size=512) as download:
            size = 0
            async for chunk in download.chunks:
                size += len(chunk)
        assert size == download.info.size > 0
    assert open_sessions() == 0  # the pool is closed with its last user


async def test_a_joined_client_leaves_its_session_once(config: ClientConfig) -> None:
    first, second = join_session(config), join_session(config)
    assert open_sessions() == 1  # one pool for both
    await first.aclose()
    await first.aclose()  # a second close must not count the other user out
    assert open_sessions() == 1
    await second.aclose()
    assert open_sessions() == 0


async def test_two_hundred_callers_cause_one_token_fetch(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    emulator.inject("latency", path=TOKEN_PATH, seconds=0.3)
    secrets_seen: list[str] = []

    async def one() -> str:
        async with shared_client(config, on_secret=secrets_seen.append) as client:
            return await client.access_token()

    tokens = await asyncio.gather(*(one() for _ in range(200)))
    assert len(set(tokens)) == 1
    assert emulator.count(TOKEN_PATH) == 1
    assert secrets_seen == [tokens[0]]  # the token went to the masker once


async def test_async_mask_callback_is_awaited(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    masked: list[str] = []

    async def amask(secret: str) -> None:
        await asyncio.sleep(0)
        masked.append(secret)

    async with shared_client(config, on_secret=amask) as client:
        token = await client.access_token()
    assert masked == [token]


async def test_revoked_token_is_replayed_once(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config, policy=FAST_RETRIES) as client:
        first = await client.access_token()
        emulator.revoke_tokens()
        with pytest.raises(FeishuVCAPIError) as raised:
            await client.get_export("1")
        assert raised.value.code == 121004  # the replay reached the real answer
        assert await client.access_token() != first
    assert emulator.count(TOKEN_PATH) == 2


async def test_a_429_pauses_every_caller_of_the_app(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config, policy=FAST_RETRIES) as client:
        await client.access_token()
        export_task_id = await client.create_export(
            "meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW
        )
        emulator.inject("rate_limit", path="/open-apis/vc/", reset=0.6)
        loop = asyncio.get_running_loop()
        started = loop.time()
        finished = await asyncio.gather(*(client.get_export(export_task_id) for _ in range(5)))
        assert len(finished) == 5
        assert loop.time() - started >= 0.6
    assert emulator.count(status=429) == 1  # the others waited instead of hitting the limit too


async def test_rate_budget_spaces_requests_evenly(config: ClientConfig) -> None:
    budget = RateBudget(per_minute=600, share=1.0)  # one every 0.1 s
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def take(client: AsyncFeishuVCClient) -> None:
        await client.run(wait_for_budget(budget))
        times.append(loop.time())

    start = loop.time()
    async with shared_client(config) as client:
        await asyncio.gather(*(take(client) for _ in range(6)))
    # The n-th request never leaves before its slot, n x 0.1 s after the first; a busy machine may only delay it.
    late = [at - (start + 0.1 * n) for n, at in enumerate(sorted(times))]
    assert all(delay >= -0.01 for delay in late), late


# -- status checks queued behind each other (what triggers use) ---------------------------------------------------


def checker_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("_check_in_turn")]  # type: ignore[union-attr]


async def create_exports(client: AsyncFeishuVCClient, count: int) -> list[str]:
    return [
        await client.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)
        for _ in range(count)
    ]


async def test_queued_checks_run_on_a_few_shared_checkers(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config) as client:
        export_ids = await create_exports(client, 3)
        emulator.inject("latency", path="/open-apis/vc/v1/exports/7", times=40, seconds=0.05)
        checks = [client.get_export_in_turn(export_ids[n % 3]) for n in range(40)]
        await asyncio.sleep(0.02)
        running = len(checker_tasks())
        tasks = await asyncio.gather(*checks)
        await asyncio.sleep(0)
        assert 1 <= running <= STATUS_CHECKERS
        assert [t.export_task_id for t in tasks] == [export_ids[n % 3] for n in range(40)]
        assert checker_tasks() == []  # they end when the queue is empty
    assert sum(emulator.count(f"/open-apis/vc/v1/exports/{i}") for i in export_ids) == 40


async def test_a_check_queued_as_the_last_checker_ends_is_still_run(
    emulator: FeishuVCEmulator, config: ClientConfig
) -> None:
    """The waiter of the last check wakes up before the finished checker's task has been cleaned up: a check it
    queues right then must start a checker, not wait for one that has already ended."""
    queue = StatusQueue(checkers=1)
    async with shared_client(config) as client:
        (export_task_id,) = await create_exports(client, 1)
        first = await queue.get_export(client, export_task_id)  # awaited directly: woken before the cleanup
        second = await asyncio.wait_for(queue.get_export(client, export_task_id), 5)
    assert first.export_task_id == second.export_task_id == export_task_id


async def test_a_cancelled_check_leaves_the_queue_unasked(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config) as client:
        busy, left = await create_exports(client, 2)
        emulator.inject("latency", path=f"/open-apis/vc/v1/exports/{busy}", times=STATUS_CHECKERS, seconds=0.2)
        ahead = [client.get_export_in_turn(busy) for _ in range(STATUS_CHECKERS)]  # every checker is busy
        behind = client.get_export_in_turn(left)
        await asyncio.sleep(0.05)
        behind.cancel()
        await asyncio.gather(*ahead)
    assert emulator.count(f"/open-apis/vc/v1/exports/{left}") == 0


async def test_a_failed_check_fails_only_its_caller(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    async with shared_client(config, policy=FAST_RETRIES) as client:
        (good,) = await create_exports(client, 1)
        results = await asyncio.gather(
            client.get_export_in_turn(good), client.get_export_in_turn("1"), client.get_export_in_turn(good),
            return_exceptions=True,
        )  # fmt: skip
    assert isinstance(results[1], FeishuVCAPIError) and results[1].code == 121004
    assert [r.export_task_id for r in (results[0], results[2])] == [good, good]  # type: ignore[union-attr]


async def test_checks_run_outside_the_callers_log_context(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    """A checker serves every wait: what one wait bound to its context (Airflow binds a trigger's ids for its log
    lines) must not tag the requests it makes for the others."""
    bound: contextvars.ContextVar[str] = contextvars.ContextVar("trigger_id")
    seen_in_checker: list[str | None] = []
    async with shared_client(config, on_secret=lambda _: seen_in_checker.append(bound.get(None))) as client:
        (export_task_id,) = await create_exports(client, 1)
        from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE

        TOKEN_CACHE.clear()  # the check itself fetches the token, inside the checker
        seen_in_checker.clear()
        bound.set("trigger 7")
        await client.get_export_in_turn(export_task_id)
    assert seen_in_checker == [None]


def test_the_thread_building_the_first_pool_pauses_while_importing_and_puts_its_tracer_back() -> None:
    import sys
    import time
    import types

    from airflow_provider_feishu_vc.client.async_client import GIL_HAND_BACK_PAUSE, _yielding_the_gil

    def own_tracer(frame: types.FrameType, event: str, arg: object) -> None:
        return None

    def step() -> None:
        return None

    sys.settrace(own_tracer)
    try:
        started = time.perf_counter()
        with _yielding_the_gil(every=0.0):  # a pause at every Python call
            assert sys.gettrace() is not own_tracer
            for _ in range(50):
                step()
        assert time.perf_counter() - started >= 50 * GIL_HAND_BACK_PAUSE  # the GIL was handed back each time
        assert sys.gettrace() is own_tracer
    finally:
        sys.settrace(None)
