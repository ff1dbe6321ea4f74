"""The flows of the core, driven with scripted answers: no server, no sockets, no sleeping (as h11 is tested)."""

from __future__ import annotations

import itertools
import time

import pytest

from airflow_provider_feishu_vc.client import api, user_grant
from airflow_provider_feishu_vc.client.budget import PROBE_GROWTH_PER_WINDOW, AppBudgets, RateBudget
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCTokenStoreError, FeishuVCTransportError
from airflow_provider_feishu_vc.client.protocol import (
    Flow,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    Sleep,
    call_with_retries,
)
from airflow_provider_feishu_vc.client.stored_tokens import LEASE_SECONDS, RefreshLease, StoredUserTokens
from airflow_provider_feishu_vc.client.token_cache import TokenCache, token_key
from tests.client.scripted import FakeClock, Script, answer, refused

POLICY = RetryPolicy(max_retries=3, base_delay=0.5, max_delay=4.0)
UNLIMITED = AppBudgets(per_minute=1e9)
STATUS = {"data": {"status": 3, "file_token": "box+/=", "url": "https://cdn/x"}}


def status_flow(budgets: AppBudgets = UNLIMITED) -> Flow[api.ExportTask]:
    return api.get_export("7111", POLICY, budgets)


def test_a_status_answer_becomes_a_typed_task_in_one_request() -> None:
    script = Script([answer(code=0, **STATUS)])
    task = script.run(status_flow())
    assert task == api.ExportTask("7111", api.ExportStatus.DONE, "https://cdn/x", "box+/=")
    assert script.kinds() == ["NeedToken", "HttpRequest"]
    assert script.requests[0].path == "/open-apis/vc/v1/exports/7111" and script.requests[0].token == "t-1"


@pytest.mark.parametrize(
    "transient",
    [refused(), answer(500, code=121001, msg="internal error"), HttpResponse(502, {}, b"<html>Bad Gateway</html>")],
    ids=["refused", "121001", "html-502"],
)
def test_transient_failures_are_retried_with_growing_jittered_backoff(transient: object) -> None:
    script = Script([transient, transient, answer(code=0, **STATUS)])  # type: ignore[list-item]
    assert script.run(status_flow()).status is api.ExportStatus.DONE
    assert len(script.requests) == 3
    first, second = script.sleeps
    assert 0 <= first <= 0.5 and 0 <= second <= 1.0  # full jitter under base * 2**(attempt - 1)


def test_retries_end_after_max_retries_naming_the_attempts() -> None:
    script = Script([refused()] * 4)
    with pytest.raises(FeishuVCTransportError, match="after 4 attempt"):
        script.run(status_flow())
    assert len(script.requests) == 4 and len(script.sleeps) == 3


def test_a_permanent_code_is_raised_at_once() -> None:
    script = Script([answer(403, code=121005, msg="no permission")])
    with pytest.raises(FeishuVCAPIError, match="Meeting management") as raised:
        script.run(status_flow())
    assert raised.value.code == 121005 and script.sleeps == []


def test_a_rejected_token_is_replaced_and_the_request_replayed_once() -> None:
    script = Script([answer(400, code=99991663, msg="token invalid"), answer(code=0, **STATUS)])
    script.run(status_flow())
    assert script.kinds() == ["NeedToken", "HttpRequest", "NeedToken", "HttpRequest"]
    assert [r.token for r in script.requests] == ["t-1", "t-2"]
    assert script.sleeps == []  # a replay is not a retry: no backoff


def test_a_second_token_rejection_is_reported_not_replayed_again() -> None:
    script = Script([answer(400, code=99991663, msg="token invalid")] * 2)
    with pytest.raises(FeishuVCAPIError) as raised:
        script.run(status_flow())
    assert raised.value.code == 99991663 and len(script.requests) == 2


def test_a_429_waits_the_reset_time_and_pauses_the_budget() -> None:
    clock = FakeClock()
    budgets = AppBudgets(per_minute=1e9, clock=clock)
    limited = answer(429, {"x-ogw-ratelimit-reset": "2.5"}, code=99991400, msg="request trigger frequency limit")

    script = Script([limited, answer(code=0, **STATUS)], clock=clock)
    flow = status_flow(budgets)
    step = next(flow)  # NeedToken
    step = flow.send("t-1")  # the request
    step = flow.send(limited)
    assert step == Sleep(2.5)
    assert budgets.for_api(api.STATUS_API).paused()  # every other caller of the app waits too
    clock.now += 2.5
    assert not budgets.for_api(api.STATUS_API).paused()
    assert script.run(status_flow(budgets)).status is api.ExportStatus.DONE


def test_a_429_without_reset_header_backs_off() -> None:
    clock = FakeClock()
    limited = answer(429, code=99991400, msg="request trigger frequency limit")
    script = Script([limited, answer(code=0, **STATUS)], clock=clock)
    script.run(status_flow(AppBudgets(per_minute=1e9, clock=clock)))
    assert len(script.sleeps) == 1 and 1.0 <= script.sleeps[0] <= 1.5


def test_requests_of_a_spent_budget_wait_for_their_slot() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=60, share=1.0, clock=clock)  # one a second
    request = HttpRequest("GET", "/open-apis/vc/v1/exports/1", budget=budget)
    flows = [call_with_retries(request, POLICY, authenticated=False) for _ in range(3)]
    assert [next(flow) for flow in flows] == [request, Sleep(1.0), Sleep(2.0)]  # three callers at once, spaced


def test_envelope_is_parsed_once_into_the_payload() -> None:
    script = Script([answer(code=0, data={"task_id": "42"})])
    response = script.run(call_with_retries(HttpRequest("POST", "/x"), POLICY))
    assert response.payload == {"code": 0, "data": {"task_id": "42"}}


def test_create_export_returns_the_id_and_refuses_an_answer_without_one() -> None:
    fields = {"start_time": 1_764_000_000, "end_time": 1_764_003_600}
    script = Script([answer(code=0, data={"task_id": "7111"})])
    assert script.run(api.create_export("meeting_list", fields, None, POLICY, UNLIMITED)) == "7111"
    assert script.requests[0].json_body == {"start_time": "1764000000", "end_time": "1764003600"}
    with pytest.raises(FeishuVCAPIError, match="no usable task_id"):
        Script([answer(code=0, data={})]).run(api.create_export("meeting_list", fields, None, POLICY, UNLIMITED))


def test_a_download_answer_stays_open_and_an_error_answer_is_raised() -> None:
    stream = object()
    file_answer = HttpResponse(200, {"content-type": "application/octet-stream", "content-length": "3"}, stream=stream)
    download = Script([file_answer]).run(api.open_download("tok", POLICY, UNLIMITED))
    assert download.stream is stream and download.info.size == 3
    with pytest.raises(FeishuVCAPIError, match="121004"):
        Script([answer(404, code=121004, msg="data not exist")]).run(api.open_download("tok", POLICY, UNLIMITED))


def test_a_token_is_fetched_masked_and_cached() -> None:
    config = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s")
    cache = TokenCache()
    script = Script([answer(code=0, tenant_access_token="t-fresh", expire=7200)])
    token = script.run(cache.renew(config, POLICY))
    assert token.value == "t-fresh" and script.masked == ["t-fresh"]
    assert script.requests[0].json_body == {"app_id": "cli_1", "app_secret": "s"} and script.requests[0].token is None
    assert cache.usable(token_key(config)) == token


def test_a_user_token_refresh_masks_both_tokens() -> None:
    config = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s", refresh_token="r-old")
    refreshed = answer(code=0, access_token="u-new", expires_in=7200, refresh_token="r-new")
    script = Script([refreshed])
    token = script.run(TokenCache().renew(config, POLICY))
    assert token.refresh_token == "r-new" and script.masked == ["u-new", "r-new"]
    assert script.requests[0].json_body["refresh_token"] == "r-old"  # type: ignore[index]


USER = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s", refresh_token="r-0")


def stored(access: str, left: float, refresh: str | None, generation: int = 0) -> StoredUserTokens:
    return StoredUserTokens(access, time.time() + left, 7200, refresh, time.time() + 86400, generation)


def test_a_new_process_reuses_the_user_token_another_process_saved() -> None:
    script = Script([], shared_reads=[stored("u-shared", 3600, "r-5")])
    token = script.run(TokenCache().renew(USER, POLICY, shared=True))
    assert token.value == "u-shared" and script.requests == [] and script.masked == ["u-shared", "r-5"]
    assert script.leases == []  # nothing to refresh, no lease taken


def test_a_refresh_takes_the_lease_uses_the_newest_shared_refresh_token_and_saves_its_successor() -> None:
    script = Script(
        [answer(code=0, access_token="u-6", expires_in=7200, refresh_token="r-6", refresh_token_expires_in=86400)],
        shared_reads=[stored("u-5", 10, "r-5", generation=5)],  # its access token is about to expire
    )
    token = script.run(TokenCache().renew(USER, POLICY, shared=True))
    assert script.requests[0].json_body["refresh_token"] == "r-5"  # type: ignore[index]  # not the connection's r-0
    [saved] = script.saved
    assert token.value == saved.access_token == "u-6" and saved.refresh_token == "r-6" and saved.generation == 6
    assert saved.access_expires_at == pytest.approx(time.time() + 7200, abs=5)
    taken, released = script.leases
    assert taken.holder == released.holder and taken.until > time.time() + 50 and released.until == 0
    kinds = script.kinds()
    assert kinds.index("Sleep") < kinds.index("HttpRequest")  # it waited for other writers before reading the lease
    assert script.sleeps == [user_grant.LEASE_SETTLE]


def test_a_process_that_loses_the_lease_waits_for_the_winners_tokens_and_refreshes_nothing() -> None:
    others = RefreshLease("another-process", time.time() + 30)
    script = Script(
        [],
        shared_reads=[stored("u-5", 10, "r-5", generation=5)] * 4 + [stored("u-6", 7200, "r-6", generation=6)],
        leases=[others],
    )
    token = script.run(TokenCache().renew(USER, POLICY, shared=True))
    assert token.value == "u-6" and script.requests == [] and script.saved == []
    assert script.sleeps == [0.25, 0.5, 1.0, 2.0]  # looked at the store until the winner's tokens appeared


def test_a_refresh_token_spent_outside_the_lease_is_replaced_by_what_the_spender_saved() -> None:
    spent = answer(400, code=20064, error="invalid_grant", error_description="The refresh token has been used")
    script = Script(
        [spent], shared_reads=[stored("u-5", 10, "r-5"), stored("u-5", 10, "r-5"), stored("u-6", 7200, "r-6")]
    )
    token = script.run(TokenCache().renew(USER, POLICY, shared=True))
    assert token.value == "u-6" and len(script.requests) == 1  # no second refresh: the other process did it
    assert script.sleeps == [user_grant.LEASE_SETTLE, 0.25] and script.saved == []


def test_a_spent_refresh_token_nobody_replaced_is_reported_after_waiting_as_long_as_a_slow_save_takes() -> None:
    spent = answer(400, code=20064, error="invalid_grant", error_description="The refresh token has been used")
    script = Script([spent])  # the store stays empty
    with pytest.raises(FeishuVCAPIError, match="already used"):
        script.run(TokenCache().renew(USER, POLICY, shared=True))
    assert len(script.requests) == 1
    assert LEASE_SECONDS <= sum(script.sleeps[1:]) <= LEASE_SECONDS + 3  # bounded, never a loop


def test_with_the_store_out_of_reach_a_held_token_is_used_while_it_lasts_and_nothing_is_refreshed() -> None:
    cache = TokenCache()
    Script([], shared_reads=[stored("u-5", 1000, "r-5")]).run(cache.renew(USER, POLICY, shared=True))
    down = Script([], store_failures={"load": 99})
    token = down.run(cache.renew(USER, POLICY, shared=True))
    assert token.value == "u-5" and down.requests == [] and down.leases == []
    assert token.is_fresh() and not token.is_fresh(time.monotonic() + user_grant.RECHECK_SECONDS + 1)  # asks again soon
    with pytest.raises(FeishuVCTokenStoreError, match="Not refreshing"):
        Script([], store_failures={"load": 99}).run(TokenCache().renew(USER, POLICY, shared=True))


def test_a_successor_that_could_not_be_saved_is_kept_and_offered_to_the_store_again() -> None:
    cache = TokenCache()
    refreshed = answer(code=0, access_token="u-6", expires_in=7200, refresh_token="r-6")
    failing = Script([refreshed], shared_reads=[stored("u-5", 10, "r-5", generation=5)], store_failures={"save": 99})
    token = failing.run(cache.renew(USER, POLICY, shared=True))
    assert token.value == "u-6" and failing.saved == []
    assert len(failing.leases) == 1  # the lease is kept: nobody else refreshes with the spent r-5 meanwhile
    assert not token.is_fresh(time.monotonic() + user_grant.RECHECK_SECONDS + 1)
    again = Script([], shared_reads=[stored("u-5", 10, "r-5", generation=5)])  # the store is back, still behind
    assert again.run(cache.renew(USER, POLICY, shared=True)).value == "u-6"
    [repaired] = again.saved
    assert repaired.refresh_token == "r-6" and repaired.generation == 6 and again.requests == []


def test_an_oauth_shaped_error_carries_its_description_and_a_hint() -> None:
    config = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s", refresh_token="r-spent")
    spent = answer(400, code=20064, error="invalid_grant", error_description="The refresh token has been used")
    with pytest.raises(FeishuVCAPIError) as raised:
        Script([spent]).run(TokenCache().renew(config, POLICY))
    message = str(raised.value)
    assert raised.value.code == 20064 and "invalid_grant / The refresh token has been used" in message
    assert "already used (each one works once)" in message and "r-spent" not in message


def test_the_oauth_servers_own_error_is_retried() -> None:
    config = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s", refresh_token="r-1")
    busy = answer(500, code=20050, error="server_error", error_description="internal error")
    script = Script([busy, answer(code=0, access_token="u-1", expires_in=7200, refresh_token="r-2")])
    assert script.run(TokenCache().renew(config, POLICY)).value == "u-1" and len(script.sleeps) == 1


def test_each_api_draws_on_a_budget_of_its_own() -> None:
    """Feishu limits every API separately: creates and downloads do not eat the status polls' share."""
    clock = FakeClock()
    budgets = AppBudgets(per_minute=60, clock=clock)  # one request every 1.1 s per API
    fields = {"start_time": 1_764_000_000, "end_time": 1_764_003_600}
    flows = [
        api.get_export("1", POLICY, budgets),
        api.create_export("meeting_list", fields, None, POLICY, budgets),
        api.create_export("resource_reservation_list", {"room_level_id": "x", **fields}, None, POLICY, budgets),
        api.open_download("tok", POLICY, budgets),
        api.get_export("2", POLICY, budgets),
    ]
    first_steps = []
    for flow in flows:
        step = next(flow)
        if type(step).__name__ == "NeedToken":
            step = flow.send("t-1")
        first_steps.append(type(step).__name__)
    assert first_steps == ["HttpRequest", "HttpRequest", "HttpRequest", "HttpRequest", "Sleep"]


def test_the_token_is_asked_for_after_the_wait_for_the_budget_so_it_cannot_expire_in_the_queue() -> None:
    """Found on the Celery fleet: a wait queued behind the app's budget longer than its token lived sent the
    expired token, was refused (99991663), replayed once, queued again, and failed on the second refusal."""
    clock = FakeClock()
    budgets = AppBudgets(per_minute=60, clock=clock)
    api.get_export("1", POLICY, budgets).send(None)  # takes the budget's one slot: the next request must wait
    flow = api.get_export("2", POLICY, budgets)
    steps = [type(next(flow)).__name__]
    while steps[-1] == "Sleep":
        steps.append(type(flow.send(None)).__name__)
    assert steps[0] == "Sleep" and steps[-1] == "NeedToken", steps  # the wait first, then the token


def test_a_429_cuts_the_pace_once_per_window_not_again_for_requests_already_under_way() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=2000, share=0.9, clock=clock)  # 100 per 3 s once a 429 says the cap is 100
    under_way = [budget.reserve() for _ in range(3)]
    full = budget.pace
    budget.refused(under_way[0], reset=0.5, window_cap=100)
    cut = budget.pace
    assert cut <= 0.8 * full and budget.paused() and budget.window_seconds == 3.0
    budget.refused(under_way[1], reset=0.5, window_cap=100)  # sent before the cut: same burst of refusals
    assert budget.pace == cut
    clock.now += 1
    budget.refused(budget.reserve(), reset=0.5, window_cap=100)  # sent after the cut, but the window still holds
    assert budget.pace == cut  # what was sent before it
    clock.now += 2
    budget.refused(budget.reserve(), reset=0.5, window_cap=100)  # a window later: the pace is still too high
    assert budget.pace < cut


def one_window_of_accepts(budget: RateBudget) -> float:
    """Accept a window's worth of requests (3 s at the current pace); return how much the pace rose."""
    before = budget.pace
    for _ in range(round(budget.pace * 3 / 60)):
        budget.accepted(budget.reserve())
    return budget.pace - before


def test_accepted_requests_win_the_pace_back_quickly_then_probe_faster_and_faster() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=2000, share=0.9, clock=clock)  # 1800 a minute; the 429 says 100 per 3 s
    budget.refused(budget.reserve(), reset=0.0, window_cap=100)
    assert budget.pace == pytest.approx(1440)  # 80% of the 1800 it was sending
    assert 0.2 * 360 <= one_window_of_accepts(budget) <= 0.25 * 360  # about a quarter of the gap to 1800
    for _ in range(40):
        one_window_of_accepts(budget)
    assert budget.pace == budget.most == 1800  # back to the full pace, never above it

    clock.now += 3
    budget.refused(budget.reserve(), reset=0.0, window_cap=100)
    budget._pace_before_cut = 0.0  # as if it had been cut while sending little: only probing is left
    # One more request per 3-s window (20 a minute) at first, a step that grows 1.25x every window.
    steps = [one_window_of_accepts(budget) for _ in range(4)]
    assert 20 < steps[0] < 30
    assert [later / earlier for earlier, later in itertools.pairwise(steps)] == pytest.approx(
        [PROBE_GROWTH_PER_WINDOW] * 3, rel=0.05
    )


def test_probing_starts_over_gently_where_the_limit_was_last_met() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=2000, share=0.9, clock=clock)
    for _ in range(64):  # sending 900 a minute, half its pace, when a 429 comes
        clock.now += 60 / 900
        budget.reserve()
    budget.refused(budget.reserve(), reset=0.0, window_cap=100)
    assert budget.pace == pytest.approx(0.8 * 900, rel=0.01)
    rises = []
    while budget.pace < 900:
        rises.append(one_window_of_accepts(budget))
    assert len(rises) <= 6  # back to 900 within a few windows
    assert one_window_of_accepts(budget) < 30  # then about one request per window (20 a minute), not the last rise


def test_a_process_that_is_never_refused_keeps_its_full_pace() -> None:
    budget = RateBudget(per_minute=100, clock=FakeClock())
    for _ in range(500):
        budget.accepted(budget.reserve())
    assert budget.pace == budget.most == 90 and budget.interval == pytest.approx(60 / 90)
