"""The Hook: connection -> credentials -> client, downloads into ObjectStoragePath, secret masking."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_ID, APP_SECRET

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def done_file_token(hook: FeishuVCHook, emulator: FeishuVCEmulator) -> tuple[str, str]:
    export_task_id = hook.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=3), end_time=NOW)
    emulator.finish_now()
    task = hook.get_export(export_task_id)
    assert task.status is ExportStatus.DONE and task.file_token
    return export_task_id, task.file_token


def test_test_connection_fetches_a_token(emulator: FeishuVCEmulator, connection_env: str) -> None:
    ok, message = FeishuVCHook().test_connection()
    assert ok and "tenant access token" in message
    ok, message = FeishuVCHook().test_connection()  # the button always asks Feishu, never the cache
    assert ok and emulator.token_requests() == 2


def test_test_connection_reports_feishus_code(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": "nope-wrong"}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_BAD", json.dumps(connection))
    ok, message = FeishuVCHook("feishu_vc_bad").test_connection()
    assert not ok and "code 10015" in message and "app secret invalid" in message


def test_test_connection_names_the_forms_labels_not_the_temporary_connection_id(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow's Test button runs under a random connection id the user never sees.
    cases = [
        ({"extra": {"timeout": 0}}, "Timeout (seconds): is 0.0; must be a number of seconds above 0, at most 3600"),
        ({"password": ""}, "App Secret: is empty"),
        ({"host": "http://feishu.internal"}, "API origin: 'http://feishu.internal' uses plain http"),
        ({"extra": {"app_type": "store", "tenant_key": "t"}}, "App ticket (App Store apps): is required"),
    ]
    for change, expected in cases:
        connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET, **change}
        monkeypatch.setenv("AIRFLOW_CONN_BW4R3J6N", json.dumps(connection))
        ok, message = FeishuVCHook("Bw4r3J6n").test_connection()
        assert not ok and message.startswith(expected), message
        assert "Bw4r3J6n" not in message and "extra." not in message


def test_uri_form_connection_works(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEISHU_VC_URI", f"feishu-vc://{APP_ID}:{APP_SECRET}@127.0.0.1:{emulator.options.port}?timeout=7"
    )
    hook = FeishuVCHook("feishu_vc_uri")
    assert hook.config.base_url == emulator.url and hook.config.timeout == 7.0
    assert hook.test_connection()[0]


def test_bad_connection_names_the_connection_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "feishu_vc", "host": "http://feishu.internal", "login": APP_ID, "password": "x" * 8}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_PLAIN", json.dumps(connection))
    with pytest.raises(FeishuVCConfigError, match=r"connection 'feishu_vc_plain' host: .* plain http"):
        _ = FeishuVCHook("feishu_vc_plain").config


def test_secret_and_tokens_are_masked(emulator: FeishuVCEmulator, connection_env: str) -> None:
    hook = FeishuVCHook()
    token = hook.get_conn().access_token()
    line = f"secret={APP_SECRET} token={token}"
    assert APP_SECRET not in redact(line) and token not in redact(line)


def test_tls_off_is_logged(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    connection = {"conn_type": "feishu_vc", "login": APP_ID, "password": APP_SECRET, "extra": {"verify_ssl": False}}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_NOTLS", json.dumps(connection))
    assert FeishuVCHook("feishu_vc_notls").config.verify_ssl is False
    assert "TLS certificate verification is OFF" in capsys.readouterr().out


def test_download_to_a_local_folder_uses_feishus_name(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path
) -> None:
    hook = FeishuVCHook()
    export_task_id, file_token = done_file_token(hook, emulator)
    landed = hook.download_export(file_token, f"{tmp_path}/exports/")
    assert landed.name == f"视频会议_meeting_list_{export_task_id}.xlsx"
    assert (tmp_path / "exports" / landed.name).read_bytes()[:2] == b"PK"
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [landed.name]  # no temporary file left


def test_download_to_memory_and_overwrite(emulator: FeishuVCEmulator, connection_env: str) -> None:
    hook = FeishuVCHook()
    _, file_token = done_file_token(hook, emulator)
    target = ObjectStoragePath(f"memory://hook-test-{time.time_ns()}/day.xlsx")
    assert hook.download_export(file_token, target) == target
    size = target.stat().st_size
    assert size > 0
    with pytest.raises(FeishuVCConfigError, match=r"destination: .* already exists; pass overwrite=True"):
        hook.download_export(file_token, target)
    hook.download_export(file_token, target, overwrite=True)
    assert target.stat().st_size == size


def test_interrupted_download_leaves_nothing(emulator: FeishuVCEmulator, connection_env: str, tmp_path) -> None:
    hook = FeishuVCHook()
    _, file_token = done_file_token(hook, emulator)
    for fault in ("drop_connection", "truncate"):
        emulator.inject(fault, path="/open-apis/vc/v1/exports/download", after_bytes=500)
        with pytest.raises(FeishuVCError):
            hook.download_export(file_token, tmp_path / "out.xlsx")
        assert list(tmp_path.iterdir()) == []


def test_a_write_the_file_system_refuses_surfaces_and_leaves_nothing(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path
) -> None:
    """A real write failure mid-file (the process's file-size limit, as a full disk would): the download fails with
    the file system's error and no file, whole or partial, remains."""
    hook = FeishuVCHook()
    _, file_token = done_file_token(hook, emulator)
    size = hook.download_export(file_token, tmp_path / "whole.xlsx").stat().st_size
    (tmp_path / "whole.xlsx").unlink()
    limit = size // 2
    script = f"""
import errno, resource, signal
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    FeishuVCHook().download_export({file_token!r}, {str(tmp_path / "out.xlsx")!r})
except OSError as error:
    print("refused:", errno.errorcode[error.errno])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "refused: EFBIG", done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_connection_of_another_type_works_with_a_warning_that_says_how_to_fix_it(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `airflow connections add --conn-type feishu-vc` stores conn_type "generic"; Airflow's own test then fails
    # with an AttributeError before reaching this provider, so the hook is where the user hears what to do.
    connection = {"conn_type": "generic", "host": emulator.url, "login": APP_ID, "password": APP_SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_GENERIC", json.dumps(connection))
    hook = FeishuVCHook("feishu_vc_generic")
    assert hook.get_conn().access_token()
    warning = capsys.readouterr().out
    assert "'generic'" in warning and "--conn-type feishu_vc" in warning and APP_SECRET not in warning


def test_a_connection_of_another_type_gets_no_hint_about_generic(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An `http` connection was never a `feishu-vc` one stored as 'generic': that explanation would mislead.
    connection = {"conn_type": "http", "host": emulator.url, "login": APP_ID, "password": APP_SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_HTTP", json.dumps(connection))
    assert FeishuVCHook("feishu_vc_http").get_conn().access_token()
    warning = capsys.readouterr().out
    assert "conn_type 'http', not 'feishu_vc'" in warning and "--conn-type feishu_vc" in warning
    assert "generic" not in warning and "feishu-vc`" not in warning and APP_SECRET not in warning
