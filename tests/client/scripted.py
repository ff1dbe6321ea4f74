"""Drive a flow with scripted outcomes, no server and no I/O (as h11's tests feed events): every step the flow
takes is recorded, HTTP requests are answered from a list, sleeps are recorded and not slept."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.protocol import (
    Driving,
    Flow,
    HttpRequest,
    HttpResponse,
    MaskSecret,
    NeedToken,
    SharedUserTokens,
    Sleep,
    Step,
)


def answer(status: int = 200, headers: dict[str, str] | None = None, **envelope: Any) -> HttpResponse:
    """A JSON answer: ``answer(code=0, data={...})``, ``answer(429, {"x-ogw-ratelimit-reset": "2"}, code=...)``."""
    head = {"content-type": "application/json", **(headers or {})}
    return HttpResponse(status, head, json.dumps(envelope).encode())


def refused() -> FeishuVCTransportError:
    return FeishuVCTransportError("https://open.feishu.cn", "ConnectError: connection refused")


@dataclass
class FakeClock:
    """A monotonic clock that moves only when the script 'sleeps'."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Script:
    """Answers for the flow's HTTP requests, in order; tokens handed out as ``t-1``, ``t-2``, ..."""

    answers: list[HttpResponse | Exception]
    clock: FakeClock = field(default_factory=FakeClock)
    steps: list[Step] = field(default_factory=list)
    tokens_given: int = 0
    #: What the shared user-token store answers to each read, in order (then: the last save, or None).
    shared_reads: list[Any] = field(default_factory=list)
    saved: list[Any] = field(default_factory=list)

    @property
    def requests(self) -> list[HttpRequest]:
        return [step for step in self.steps if isinstance(step, HttpRequest)]

    @property
    def sleeps(self) -> list[float]:
        return [step.seconds for step in self.steps if isinstance(step, Sleep)]

    @property
    def masked(self) -> list[str]:
        return [step.value for step in self.steps if isinstance(step, MaskSecret)]

    def kinds(self) -> list[str]:
        return [type(step).__name__ for step in self.steps]

    def run(self, flow: Flow[Any]) -> Any:
        driving = Driving(flow)
        pending: Iterable[HttpResponse | Exception] = iter(self.answers)
        while (step := driving.next_step()) is not None:
            self.steps.append(step)
            if isinstance(step, HttpRequest):
                driving.outcome = next(pending)  # type: ignore[call-overload]
            elif isinstance(step, Sleep):
                self.clock.now += step.seconds
            elif isinstance(step, NeedToken):
                self.tokens_given += 1
                driving.outcome = f"t-{self.tokens_given}"
            elif isinstance(step, SharedUserTokens) and step.save is not None:
                self.saved.append(step.save)
                driving.outcome = step.save
            elif isinstance(step, SharedUserTokens):
                driving.outcome = self.shared_reads.pop(0) if self.shared_reads else (self.saved or [None])[-1]
        return driving.result


def first_request(flow: Flow[Any]) -> HttpRequest:
    """The first HTTP request a flow sends (validation errors raise before it)."""
    driving = Driving(flow)
    while (step := driving.next_step()) is not None:
        if isinstance(step, HttpRequest):
            return step
        driving.outcome = "t-1" if isinstance(step, NeedToken) else None
    raise AssertionError("the flow sent no request")
