"""How Feishu's errors read: Feishu's words, the log id when there is one, the hint; no stray spaces."""

from __future__ import annotations

import json

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.client.protocol import HttpResponse, parse_envelope


def refusal(msg: str, headers: dict[str, str]) -> str:
    answer = HttpResponse(200, headers, json.dumps({"code": 10015, "msg": msg}).encode())
    with pytest.raises(FeishuVCAPIError) as raised:
        parse_envelope(answer)
    return str(raised.value)


@pytest.mark.parametrize("msg", ["app secret invalid", "app secret invalid ", " app secret invalid\n"])
@pytest.mark.parametrize("log_id", [None, "", "  ", "20261204abc"])
def test_the_message_has_no_stray_space_with_or_without_a_log_id(msg: str, log_id: str | None) -> None:
    text = refusal(msg, {} if log_id is None else {"x-tt-logid": log_id})
    logged = f" [log_id {log_id}]" if log_id and log_id.strip() else ""
    assert text == (
        f"Feishu API error (code 10015, HTTP 200): app secret invalid{logged}. "
        "Feishu rejected the App Secret: check the connection's password (App Secret)."
    )


def test_a_code_without_a_hint_ends_with_feishus_words() -> None:
    error = FeishuVCAPIError(code=1234567, msg="something odd ", http_status=400, log_id=" ")
    assert str(error) == "Feishu API error (code 1234567, HTTP 400): something odd"
