"""Measure how long an event loop is blocked: for tests and benchmarks of triggers."""

from __future__ import annotations

import asyncio
from typing import Any


class LoopLagMonitor:
    """``async with LoopLagMonitor() as lag: ...`` then ``lag.worst`` holds the longest delay (seconds) that a
    ticker due every ``tick`` seconds saw: how long something held the loop."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick = tick
        self.worst = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            expected = loop.time() + self.tick
            before = self._sample()
            await asyncio.sleep(self.tick)
            self._record(loop.time() - expected, before)

    def _sample(self) -> Any:
        """What a subclass reads just before each tick's sleep, handed back to :meth:`_record`."""
        return None

    def _record(self, lag: float, before: Any) -> None:
        """Note one tick's lag (seconds late)."""
        self.worst = max(self.worst, lag)

    async def __aenter__(self) -> LoopLagMonitor:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
