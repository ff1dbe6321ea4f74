"""``python -m airflow_provider_feishu_vc.testing.emulator -v`` prints one line per request (method, path, status),
so a shell user sees the traffic; never a secret, a token, or a file token."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_feishu_vc.testing.process import free_port

APP_ID, APP_SECRET = "cli_requestlog", "request-log-app-secret"


@pytest.fixture
def verbose_emulator() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    command = [sys.executable, "-m", "airflow_provider_feishu_vc.testing.emulator", "-v", "--port", str(port),
               "--app-id", APP_ID, "--app-secret", APP_SECRET, "--export-delay", "0"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert process.stdout is not None
        listening = process.stdout.readline()  # printed once it serves (an empty line if it ended)
        assert listening.startswith("Feishu VC emulator listening on http://127.0.0.1:")
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_verbose_prints_each_request_without_secrets(verbose_emulator: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = verbose_emulator
    with httpx.Client(base_url=url) as feishu:
        token = feishu.post(
            "/open-apis/auth/v3/tenant_access_token/internal", json={"app_id": APP_ID, "app_secret": APP_SECRET}
        ).json()["tenant_access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        day = {"start_time": "1795363200", "end_time": "1795449600"}
        created = feishu.post("/open-apis/vc/v1/exports/meeting_list", params={"user_id_type": "open_id"},
                              json=day, headers=auth).json()  # fmt: skip
        task_id = created["data"]["task_id"]
        status = feishu.get(f"/open-apis/vc/v1/exports/{task_id}", headers=auth).json()["data"]
        file_token = status["file_token"]
        download = feishu.get("/open-apis/vc/v1/exports/download", params={"file_token": file_token}, headers=auth)
        assert download.is_success
        assert feishu.get(status["url"], headers=auth).is_success  # the CDN address carries the file token
        feishu.get("/open-apis/vc/v1/exports/1", headers={"Authorization": "Bearer not-a-token"})
    process.terminate()  # every line is flushed as printed: all of them are in the pipe
    lines = process.communicate(timeout=30)[0].splitlines()
    shown = [re.sub(r"^\S+ ", "", line) for line in lines]  # each line starts with the time
    assert shown == [
        "POST /open-apis/auth/v3/tenant_access_token/internal 200",
        "POST /open-apis/vc/v1/exports/meeting_list?user_id_type=*** 200",
        f"GET /open-apis/vc/v1/exports/{task_id} 200",
        "GET /open-apis/vc/v1/exports/download?file_token=*** 200",
        "GET /cdn/*** 200",
        "GET /open-apis/vc/v1/exports/1 400",
    ], lines
    for secret in (APP_SECRET, token, file_token, "not-a-token"):
        assert all(secret not in line for line in lines)
