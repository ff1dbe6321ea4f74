"""What users type, generated: connection hosts, logins, passwords, ports, URIs and every extra; export kinds, fields
and ids (path injection, unicode, whitespace); destinations. Each ends in the documented result or a
``FeishuVCConfigError`` whose field is one the user gave, and no message repeats a password."""

from __future__ import annotations

import json
import string

from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.config import EXTRA_TYPES, ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.client.exports import (
    EXPORT_KINDS,
    build_export_body,
    validate_export_task_id,
    validate_user_id_type,
)
from tests.fuzz.checks import boundary
from tests.fuzz.strategies import digit_strings, json_values

PASSWORD = "fuzz-password-value"
#: What the fields of a config error may be named after.
CONNECTION_FIELDS = {"host", "port", "extra", "login (App ID)", "password (App Secret)"} | {
    f"extra.{name}" for name in (*EXTRA_TYPES, "app_ticket")
}

hosts = st.one_of(
    st.none(),
    st.sampled_from(["", "lark", "feishu", "LARK", "open.feishu.cn", "https://open.feishu.cn", "http://127.0.0.1:8080",
                     "http://evil.example", "https://user:pw@open.feishu.cn", "https://open.feishu.cn/path?x=1",
                     "ftp://open.feishu.cn", "https://[::1]:99999", "https://exa mple.com", "127.0.0.1:8080", "[::1]",
                     "https://open.feishu.cn:0", "http://localhost:65536", "https://ßtraße.de", "https://\x00x"]),
    st.text(max_size=40),
    st.builds(lambda scheme, host: f"{scheme}://{host}", st.sampled_from(["http", "https", "HTTPS"]),
              st.text(string.ascii_letters + string.digits + ".-:[]@%", max_size=30)),
)  # fmt: skip
extras = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=40),
    st.dictionaries(st.sampled_from([*EXTRA_TYPES, "app_ticket", "unknown", "extra__feishu_vc__timeout"]),
                    json_values | st.sampled_from(["true", "false", "1e3", "-1", "nan", "inf", " 30 ", "0"]),
                    max_size=4),
    st.dictionaries(st.sampled_from([*EXTRA_TYPES]), json_values, max_size=3).map(json.dumps),
    json_values,
)  # fmt: skip


@given(hosts, st.none() | st.text(max_size=20), st.none() | st.text(max_size=20), st.none() | st.integers(-5, 70000),
       extras)  # fmt: skip
def test_any_connection_is_settings_or_an_error_naming_its_field(
    host: str | None, login: str | None, password: str | None, port: int | None, extra: object
) -> None:
    secret = (password or "") + PASSWORD if password else PASSWORD
    with boundary("users: connection fields", secrets=[secret]):
        try:
            config = ClientConfig.from_connection_parts(host=host, login=login, password=secret, port=port, extra=extra)  # type: ignore[arg-type]
        except FeishuVCConfigError as error:
            given_keys = {f"extra.{key}" for key in extra} if isinstance(extra, dict) else set()
            assert error.field in CONNECTION_FIELDS | given_keys, error.field
            raise
        assert config.base_url.startswith(("https://", "http://")) and config.app_id
        assert config.timeout > 0 and config.max_retries >= 0 and config.rate_limit_per_minute > 0
        assert config.timeout < float("inf") and config.rate_limit_per_minute < float("inf")


@given(st.text(max_size=80))
def test_any_connection_uri_airflow_accepts_is_settings_or_an_error_naming_its_field(tail: str) -> None:
    from airflow.sdk import Connection

    from airflow_provider_feishu_vc.hooks.feishu_vc import config_from_connection

    try:
        connection = Connection.from_uri(f"feishu-vc://cli_x:{PASSWORD}@{tail}", conn_id="fuzz")
    except Exception:  # Airflow's own parser refused it: not our boundary
        assume(False)
        return
    with boundary("users: connection URIs", secrets=[PASSWORD]):
        try:
            config_from_connection(connection)
        except FeishuVCConfigError as error:
            assert error.field.split(" ", 1)[-1].split(" ", 1)[-1] in CONNECTION_FIELDS or "fuzz" in error.field
            raise


identifiers = st.text(max_size=30) | st.sampled_from(
    ["../../auth/v3", "%2e%2e", "?x=1", "7111325589855797267", " 7111 ", "٣٤٥", "１２３", "", "0", "-1", "7" * 40]
)  # fmt: skip
field_values = (
    json_values | identifiers | digit_strings | st.datetimes(timezones=st.none() | st.timezones()) | st.dates()
)


@given(st.sampled_from([*EXPORT_KINDS, "meetings", ""]) | st.text(max_size=10),
       st.dictionaries(st.sampled_from(sorted({f for k in EXPORT_KINDS.values() for f in k.fields} | {"bogus"})),
                       field_values, max_size=6),
       st.none() | st.sampled_from(["open_id", "union_id", "user_id", "email", ""]))  # fmt: skip
def test_any_export_request_is_a_body_or_an_error_naming_a_field(
    kind: str, fields: dict, user_id_type: str | None
) -> None:
    every_field = {f for k in EXPORT_KINDS.values() for f in k.fields}
    with boundary("users: export fields"):
        try:
            export_kind, body = build_export_body(kind, fields)
            validate_user_id_type(export_kind, user_id_type)
        except FeishuVCConfigError as error:
            named = {name.strip() for name in error.field.split("/")}
            assert named <= {*fields, *every_field, "export_type", "user_id_type"}, error.field
            raise
        json.dumps(body)  # what is sent is plain JSON
        start, end = export_kind.time_range
        assert int(body[end]) > int(body[start])


@given(digit_strings | identifiers | st.floats(allow_nan=True, allow_infinity=True))
def test_any_time_is_unix_seconds_or_an_error_naming_its_field(value: object) -> None:
    from airflow_provider_feishu_vc.client.exports import to_unix_seconds

    with boundary("users: times"):
        try:
            seconds = to_unix_seconds("start_time", value)
        except FeishuVCConfigError as error:
            assert error.field == "start_time"
            raise
        assert isinstance(seconds, int)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            assert value.strip().isascii(), f"{value!r} read as {seconds}"


@given(identifiers | json_values)
def test_any_export_id_is_a_plain_number_or_refused_before_any_request(value: object) -> None:
    with boundary("users: export ids"):
        export_task_id = validate_export_task_id(value)
        assert export_task_id.isascii() and export_task_id.isdigit()


@given(st.text(max_size=60) | st.sampled_from(["s3://", "s3:///key", "nope://x/y", "file://", "://", "memory://",
                                               "C:\\\\x", "gs://b/k", "hdfs://h/p", "s3://b/k/"]))  # fmt: skip
def test_any_destination_is_a_storage_path_or_an_error_naming_destination(destination: str) -> None:
    from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path

    with boundary("users: destinations"):
        try:
            as_storage_path(destination)
        except FeishuVCConfigError as error:
            assert error.field == "destination"
            raise
