"""Connection fields -> client settings: every bad input is refused by name."""

from __future__ import annotations

import pytest

from airflow_provider_feishu_vc.client.config import ClientConfig, normalize_base_url, parse_extras
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "https://open.feishu.cn"),
        ("", "https://open.feishu.cn"),
        ("lark", "https://open.larksuite.com"),
        ("Feishu", "https://open.feishu.cn"),
        ("open.larksuite.com", "https://open.larksuite.com"),
        ("https://feishu.example.com/", "https://feishu.example.com"),
        ("http://127.0.0.1:8999", "http://127.0.0.1:8999"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_host_becomes_an_api_origin(host: str | None, expected: str) -> None:
    assert normalize_base_url(host) == expected


def test_a_port_beside_a_complete_origin_is_refused_not_silently_used() -> None:
    # The form hides Port: a port set through the CLI would change an origin the form shows, unseen.
    with pytest.raises(FeishuVCConfigError, match=r"port: is 9000, .*put the port in the API origin") as raised:
        ClientConfig.from_connection_parts(host="http://localhost", login="cli_x", password="s", port=9000)
    assert raised.value.field == "port"
    for hidden in (None, 0):  # what Airflow stores, and what its form sends for the hidden field
        config = ClientConfig.from_connection_parts(host="http://localhost:9000", login="x", password="s", port=hidden)
        assert config.base_url == "http://localhost:9000"
    # A URI-form connection (feishu-vc://id:secret@127.0.0.1:9000) has a bare host: its port completes the origin.
    config = ClientConfig.from_connection_parts(host="127.0.0.1", login="x", password="s", port=9000)
    assert config.base_url == "http://127.0.0.1:9000"


def test_the_old_app_ticket_extra_is_refused_with_its_new_name() -> None:
    with pytest.raises(FeishuVCConfigError, match=r"extra\.app_ticket: is now called app_ticket_secret"):
        parse_extras({"app_type": "store", "app_ticket": "t-123"})
    assert parse_extras({"app_ticket": ""}) == {}  # an empty field left by the old form is harmless


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("http://open.feishu.cn", "only https is allowed except for loopback"),
        ("http://10.0.0.5:8080", "only https is allowed except for loopback"),
        ("ftp://open.feishu.cn", "is not an http(s) origin"),
        ("https://open.feishu.cn/open-apis", "must be an origin only"),
        ("https://user:pw@open.feishu.cn", "must not carry credentials"),
    ],
)
def test_bad_hosts_are_refused_by_name(host: str, message: str) -> None:
    with pytest.raises(FeishuVCConfigError, match="host") as raised:
        normalize_base_url(host)
    assert message in str(raised.value)
    assert raised.value.field == "host"


def test_missing_credentials_name_the_field() -> None:
    with pytest.raises(FeishuVCConfigError, match=r"login \(App ID\)"):
        ClientConfig.from_connection_parts(host=None, login="", password="x")
    with pytest.raises(FeishuVCConfigError, match=r"password \(App Secret\)"):
        ClientConfig.from_connection_parts(host=None, login="cli_x", password=None)


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ('{"app_type": "enterprise"}', "extra.app_type", "allowed: self_built, store"),
        ('{"app_type": "store", "app_ticket_secret": "t"}', "extra.tenant_key", "required when app_type is 'store'"),
        ('{"app_type": "store", "tenant_key": "k"}', "extra.app_ticket_secret", "required when app_type is 'store'"),
        ('{"timeout": "soon"}', "extra.timeout", "must be int or float"),
        ('{"max_retries": 2.5}', "extra.max_retries", "must be int"),
        ('{"max_retries": true}', "extra.max_retries", "must be int"),
        ('{"verify_ssl": "maybe"}', "extra.verify_ssl", "must be bool"),
        ('{"timeout": -1}', "extra.timeout", "above 0, at most 3600"),
        ('{"timeout": "nan"}', "extra.timeout", "above 0, at most 3600"),
        ('{"timeout": "inf"}', "extra.timeout", "above 0, at most 3600"),
        ('{"max_retries": 1000}', "extra.max_retries", "must be 0 to 100"),
        ('{"rate_limit_per_minute": 0}', "extra.rate_limit_per_minute", "at least 1"),
        ('{"rate_limit_per_minute": 0.5}', "extra.rate_limit_per_minute", "at least 1"),
        ('{"rate_limit_per_minute": "inf"}', "extra.rate_limit_per_minute", "at least 1"),
        ('{"region": "cn"}', "extra.region", "not a known option"),
        ("{not json", "extra", "not valid JSON"),
        ("[1, 2]", "extra", "must be a JSON object"),
    ],
)
def test_bad_extras_are_refused_by_name(extra: str, field: str, message: str) -> None:
    with pytest.raises(FeishuVCConfigError) as raised:
        ClientConfig.from_connection_parts(host=None, login="cli_x", password="secret", extra=extra)
    assert raised.value.field == field
    assert message in str(raised.value)


def test_extras_given_as_text_are_typed() -> None:
    extras = parse_extras({"timeout": "5", "max_retries": "2", "verify_ssl": "false", "rate_limit_per_minute": "60"})
    assert extras == {"timeout": 5, "max_retries": 2, "verify_ssl": False, "rate_limit_per_minute": 60}


def test_ui_prefixed_and_empty_extras_are_accepted() -> None:
    extras = parse_extras({"extra__feishu_vc__tenant_key": "k1", "app_ticket": "", "timeout": None})
    assert extras == {"tenant_key": "k1"}


def test_repr_shows_no_secret() -> None:
    config = ClientConfig.from_connection_parts(
        host=None, login="cli_x", password="the-app-secret", extra={"refresh_token": "the-refresh-token"}
    )
    assert "the-app-secret" not in repr(config)
    assert "the-refresh-token" not in repr(config)
    assert config.secrets == ["the-app-secret", "the-refresh-token"]
    assert config.token_kind == "user"
