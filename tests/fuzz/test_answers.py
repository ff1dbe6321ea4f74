"""What Feishu answers, generated: envelopes of any shape, non-JSON and truncated bodies, any status, junk rate-limit
headers, lying Content-Disposition and Content-Length, token and OAuth answers, redirects. The flows run against
scripted answers (no server), so thousands of examples take seconds."""

from __future__ import annotations

import math
import time

from hypothesis import example, given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client import api
from airflow_provider_feishu_vc.client.budget import AppBudgets
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.files import (
    MAX_FILENAME_BYTES,
    FileInfo,
    check_complete,
    filename_from_content_disposition,
    safe_filename,
)
from airflow_provider_feishu_vc.client.protocol import HttpResponse, RetryPolicy
from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens
from airflow_provider_feishu_vc.client.token_cache import TokenCache
from tests.client.scripted import FakeClock, Script
from tests.fuzz.checks import boundary
from tests.fuzz.strategies import as_json, bodies, envelope, headers, json_values, status_data, statuses

#: The tokens the scripted driver hands out: a message quoting one leaks it. Long and odd, so that no generated
#: answer holds one by chance (with ``t-1``, an answer holding the text "\t-1" was quoted as if it leaked a token).
TOKEN_PREFIX = "scripted-token-9f2c-"
TOKENS = [TOKEN_PREFIX + "1", TOKEN_PREFIX + "2"]


def scripted(replies: list[HttpResponse], clock: FakeClock) -> Script:
    return Script(list(replies), clock=clock, token_prefix=TOKEN_PREFIX)


POLICY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)
SECRET = "fuzz-app-secret-value"
#: The longest any flow may ask to sleep: the policy's backoff, or Feishu's rate-limit window.
LONGEST_SLEEP = 60.0 + 1.0


def answers(data: st.SearchStrategy[object]) -> st.SearchStrategy[list[HttpResponse]]:
    answer = st.builds(lambda status, head, body: HttpResponse(status, head, body), statuses, headers, bodies(data))
    # A successful envelope whose data is generated: the decoder sees every value of every field of a real answer
    # (non-finite numbers written as Infinity, NaN or 1e400 included), not only the junk around it.
    accepted = st.builds(
        lambda data, huge: HttpResponse(200, {}, as_json({"code": 0, "msg": "ok", "data": data}, huge)),
        data,
        st.booleans(),
    )
    return st.lists(answer | accepted, min_size=4, max_size=4)


def run(script: Script, flow: object) -> object:
    result = script.run(flow, max_steps=200)  # type: ignore[arg-type]
    assert all(math.isfinite(s) and 0 <= s <= LONGEST_SLEEP for s in script.sleeps), script.sleeps
    return result


@given(answers(status_data))
def test_any_status_answer_is_a_typed_task_or_a_typed_error(replies: list[HttpResponse]) -> None:
    clock = FakeClock()
    with boundary("Feishu answers: export status", secrets=TOKENS):
        task = run(scripted(replies, clock), api.get_export("7111", POLICY, AppBudgets(100, clock=clock)))
        assert isinstance(task, api.ExportTask) and isinstance(task.status, api.ExportStatus)
        if task.status is api.ExportStatus.DONE:
            assert isinstance(task.file_token, str) and task.file_token
        for text in (task.url, task.file_token, task.fail_msg):
            assert text is None or isinstance(text, str)


@given(status_data)
def test_any_decoded_status_data_is_a_typed_task_or_a_typed_error(data: dict[str, object]) -> None:
    """What a driver decoded may come from anywhere (a test, a cache, another decoder): ``from_payload`` alone holds
    the boundary too, non-finite numbers included."""
    with boundary("Feishu answers: decoded export status"):
        task = api.ExportTask.from_payload("7111", {"code": 0, "data": data})
        assert isinstance(task.status, api.ExportStatus)


@given(answers(status_data))
@example(  # found by the deep profile: an answer quoted in the error held "\t-1", taken for the token "t-1"
    replies=[HttpResponse(200, {}, as_json({"code": 0, "msg": "ok", "data": {"status": "\t-1", "task_id": math.inf}},
                                           False)), HttpResponse(200, {}, b"{}"), HttpResponse(200, {}, b""),
             HttpResponse(200, {}, as_json({"code": 0, "msg": "ok", "data": {}}, False))],
)  # fmt: skip
def test_any_create_answer_is_a_numeric_export_id_or_a_typed_error(replies: list[HttpResponse]) -> None:
    clock = FakeClock()
    fields = {"start_time": 1_764_000_000, "end_time": 1_764_003_600}
    flow = api.create_export("meeting_list", fields, None, POLICY, AppBudgets(100, clock=clock))
    with boundary("Feishu answers: create export", secrets=TOKENS):
        export_task_id = run(scripted(replies, clock), flow)
        assert isinstance(export_task_id, str) and export_task_id.isdigit()


@given(answers(st.nothing()), st.text(max_size=300), st.text(max_size=12))
def test_any_download_answer_gives_a_safe_file_name_and_an_honest_size(
    replies: list[HttpResponse], disposition: str, length: str
) -> None:
    clock = FakeClock()
    for reply in replies:  # a download's answer is a file: give the successful ones lying headers
        if reply.status == 200:
            reply.headers = {**reply.headers, "content-disposition": disposition, "content-length": length,
                             "content-type": "application/octet-stream"}  # fmt: skip
    with boundary("Feishu answers: download headers", secrets=TOKENS):
        answer = run(scripted(replies, clock), api.open_download("tok+/=", POLICY, AppBudgets(100, clock=clock)))
        info = answer.info
        assert info.size is None or (isinstance(info.size, int) and info.size >= 0)
        name = safe_filename(info.filename, "fallback.xlsx")
        assert_creatable(name)
        for received in (0, 1, info.size or 0):
            try:
                check_complete(info, received)
            except Exception as error:
                assert type(error).__name__ == "FeishuVCDownloadError", error
            else:
                assert received > 0 and (info.size is None or received == info.size)


@given(st.text(max_size=400) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_any_content_disposition_gives_a_name_a_store_can_create(header: str) -> None:
    with boundary("Feishu answers: Content-Disposition"):
        assert_creatable(safe_filename(filename_from_content_disposition(header), "fallback.xlsx"))


def assert_creatable(name: str) -> None:
    """A file name any store can create, with room for the hidden ``.part`` name beside it (255 bytes per name)."""
    assert name and name not in (".", "..") and "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert len(f".{name}.0123456789ab.part".encode()) <= 255


@given(answers(st.nothing()), st.sampled_from(["self_built", "store"]))
def test_any_tenant_token_answer_is_a_token_or_a_typed_error_quoting_no_secret(
    replies: list[HttpResponse], app_type: str
) -> None:
    extra = (
        {"app_type": app_type, "tenant_key": "tk", "app_ticket_secret": "fuzz-ticket"} if app_type == "store" else {}
    )
    config = ClientConfig.from_connection_parts(host=None, login="cli_fuzz", password=SECRET, extra=extra)
    with boundary("Feishu answers: tenant token", secrets=[SECRET, "fuzz-ticket"]):
        token = run(Script(replies), TokenCache().renew(config, POLICY))
        assert isinstance(token.value, str) and token.value and math.isfinite(token.expires_at)


oauth_answers = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from([0, 20026, 20037, 20064, 20050]) | json_values,
        "access_token": st.text(min_size=1, max_size=20) | json_values,
        "expires_in": st.sampled_from([7200, 0, -5, 1e308]) | json_values,
        "refresh_token": st.text(min_size=1, max_size=20) | json_values,
        "refresh_token_expires_in": st.sampled_from([2592000, -1, 1e308]) | json_values,
        "error": json_values,
        "error_description": json_values,
    },
)


@given(st.lists(st.builds(lambda status, body: HttpResponse(status, {"content-type": "application/json"}, body),
                          statuses, oauth_answers.map(lambda v: __import__("json").dumps(v).encode())),
                min_size=3, max_size=3))  # fmt: skip
def test_any_oauth_answer_is_a_user_token_or_a_typed_error_quoting_no_token(replies: list[HttpResponse]) -> None:
    config = ClientConfig.from_connection_parts(
        host=None, login="cli_fuzz", password=SECRET, extra={"refresh_token": "r-seed-token"}
    )
    stale = StoredUserTokens("u-old-token", time.time() + 5, 7200, "r-stored-token", None, 3)
    with boundary(
        "Feishu answers: OAuth user token", secrets=[SECRET, "r-seed-token", "r-stored-token", "u-old-token"]
    ):
        token = run(Script(replies, shared_reads=[stale]), TokenCache().renew(config, POLICY, shared=True))
        assert isinstance(token.value, str) and token.value


@given(envelope(status_data), st.sampled_from([301, 302, 303, 307, 308]))
def test_a_redirect_is_never_followed_it_is_an_error(body: dict, status: int) -> None:
    import json

    from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError

    redirect = HttpResponse(status, {"location": "https://evil.example/steal"}, json.dumps(body).encode())
    clock = FakeClock()
    with boundary("Feishu answers: redirects", secrets=TOKENS[:1], allowed=(FeishuVCAPIError,)):
        run(scripted([redirect] * 4, clock), api.get_export("7111", POLICY, AppBudgets(100, clock=clock)))
        raise AssertionError("a redirect was taken for an answer")


def test_file_info_survives_any_header_mapping() -> None:
    assert FileInfo.from_headers({"content-length": "-5"}).size is None
    assert FileInfo.from_headers({"content-length": "1e3"}).size is None
