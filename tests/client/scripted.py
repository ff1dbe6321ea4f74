"""Drive a flow with scripted outcomes, no server and no I/O (as h11's tests feed events): every step the flow
takes is recorded, HTTP requests are answered from a list, sleeps are recorded and not slept."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError, FeishuVCTransportError
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
    """Answers for the flow's HTTP requests, in order; tokens handed out as ``t-1``, ``t-2``, ... (``token_prefix``
    then the count)."""

    answers: list[HttpResponse | Exception]
    clock: FakeClock = field(default_factory=FakeClock)
    #: What a token handed out starts with: a fuzz test that looks for tokens in messages wants one that no
    #: generated answer can hold by chance (``t-1`` is in the JSON of the text "\t-1").
    token_prefix: str = "t-"
    steps: list[Step] = field(default_factory=list)
    tokens_given: int = 0
    #: What the shared user-token store answers to each read, in order (then: the last save, or None).
    shared_reads: list[Any] = field(default_factory=list)
    saved: list[Any] = field(default_factory=list)
    #: Every refresh lease written to the store; a read answers the last one.
    leases: list[Any] = field(default_factory=list)
    #: The grants the flow asked the driver to keep offering to the store in the background.
    kept_saving: list[Any] = field(default_factory=list)
    #: How many times each store action ("load", "save", "load_lease", "save_lease") fails before it works.
    store_failures: dict[str, int] = field(default_factory=dict)

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

    def run(self, flow: Flow[Any], max_steps: int | None = None) -> Any:
        """Drive ``flow`` to its end; with ``max_steps``, fail (instead of spinning for ever) past that many steps."""
        driving = Driving(flow)
        pending: Iterable[HttpResponse | Exception] = iter(self.answers)
        while (step := driving.next_step()) is not None:
            self.steps.append(step)
            if max_steps is not None and len(self.steps) > max_steps:
                raise AssertionError(f"the flow took more than {max_steps} steps: {self.kinds()[-10:]} ...")
            if isinstance(step, HttpRequest):
                driving.outcome = next(pending)  # type: ignore[call-overload]
            elif isinstance(step, Sleep):
                self.clock.now += step.seconds
            elif isinstance(step, NeedToken):
                self.tokens_given += 1
                driving.outcome = f"{self.token_prefix}{self.tokens_given}"
            elif isinstance(step, SharedUserTokens):
                driving.outcome = self._store(step)
        return driving.result

    def _store(self, step: SharedUserTokens) -> Any:
        if self.store_failures.get(step.action, 0) > 0:
            self.store_failures[step.action] -= 1
            return FeishuVCTokenStoreError(f"scripted: the store refused {step.action}")
        if step.action == "keep_saving":
            self.kept_saving.append(step.value)
        elif step.action == "save":
            self.saved.append(step.value)
        elif step.action == "save_lease":
            self.leases.append(step.value)
        elif step.action == "load_lease":
            return self.leases[-1] if self.leases else None
        elif self.shared_reads:
            return self.shared_reads.pop(0)
        else:
            return (self.saved or [None])[-1]
        return None


def first_request(flow: Flow[Any]) -> HttpRequest:
    """The first HTTP request a flow sends (validation errors raise before it)."""
    driving = Driving(flow)
    while (step := driving.next_step()) is not None:
        if isinstance(step, HttpRequest):
            return step
        driving.outcome = "t-1" if isinstance(step, NeedToken) else None
    raise AssertionError("the flow sent no request")
