"""User tokens across processes: every Airflow task (and the trigger) runs in a process of its own, and Feishu's
refresh tokens work once, so the current tokens live in the metadata DB (an Airflow Variable) where every process
reads and rotates them. Real processes, a real metadata DB (SQLite), the emulator enforcing single use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_ID, APP_SECRET, USER_CONN_ID, airflow_cli

CONN_ID = USER_CONN_ID
SEED = "emulator-refresh-token"  # the emulator's first refresh token: the grant the connection starts from


def store_key(seed: str) -> str:
    """The Variable a grant's tokens live in (named by the app and the grant's first refresh token)."""
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore

    config = ClientConfig(base_url="https://open.feishu.cn", app_id=APP_ID, app_secret=APP_SECRET, refresh_token=seed)
    return VariableUserTokenStore.for_config(config).key


STORE_KEY = store_key(SEED)
OAUTH_PATH = "/open-apis/authen/v2/oauth/token"


def as_environment_connection(monkeypatch: pytest.MonkeyPatch, emulator: FeishuVCEmulator) -> None:
    """The same connection as an environment variable, for code that runs outside a task (the SDK reads the
    metadata DB's connections only through a task's supervisor); the tokens are still shared through the DB."""
    extra = {"refresh_token": emulator.options.refresh_token, "rate_limit_per_minute": 60_000}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", emulator.connection(**extra))


def stored_tokens(key: str = STORE_KEY) -> dict:
    """The shared tokens, read as another process of the deployment reads them (this test process may hold an
    older view of the Fernet key the value is encrypted with)."""
    return json.loads(airflow_cli("variables", "get", key).stdout.strip().splitlines()[-1])


def test_three_runs_in_three_processes_never_send_feishu_a_spent_refresh_token(
    user_connection: str, emulator: FeishuVCEmulator, tmp_path: Path
) -> None:
    for run in range(3):
        result = airflow_cli("dags", "test", "feishu_vc_test_user_token", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "state=success" in output, f"run {run + 1}:\n{output[-4000:]}"
        time.sleep(4)  # the access token the run saved expires: the next process must refresh, with the newest
    refreshes_ok = emulator.count(OAUTH_PATH, status=200)
    assert refreshes_ok >= 3, "each process after an expiry refreshed"
    assert emulator.count(OAUTH_PATH, status=400) == 0, "a process sent Feishu a spent or unknown refresh token"
    saved = stored_tokens()
    assert not emulator.state.refresh_token_spent(saved["refresh_token"])  # the store holds the live successor
    assert emulator.state.refresh_token_spent(emulator.options.refresh_token)  # the connection's own is long spent
    for secret in (saved["refresh_token"], saved["access_token"], APP_SECRET):
        assert secret not in output, "a token reached the task log"


REFRESH_AT = textwrap.dedent(
    """
    import hashlib, sys, time
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

    hook = FeishuVCHook(sys.argv[1])
    client = hook.get_conn()  # connection read, client built: only the refresh is left for the start signal
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    print("token", hashlib.sha256(client.access_token().encode()).hexdigest())
    """
)


def test_two_processes_refreshing_at_the_same_moment_both_succeed_with_one_token(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_environment_connection(monkeypatch, emulator)  # outside a task the SDK reads connections from the env only
    start_at = time.time() + 6  # both processes are ready well before then
    command = [sys.executable, "-c", REFRESH_AT, CONN_ID, str(start_at)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    tokens = {line for out, _ in outputs for line in out.splitlines() if line.startswith("token ")}
    assert len(tokens) == 1, "the two processes ended with different user tokens"
    # Exactly one refresh reached Feishu; the other process either saw its save at once or was told the
    # refresh token was used (20064) and took the tokens the first one saved.
    assert emulator.count(OAUTH_PATH, status=200) == 1
    assert emulator.count(OAUTH_PATH, status=400) <= 1
    assert not emulator.state.refresh_token_spent(stored_tokens()["refresh_token"])


async def test_a_trigger_refreshes_with_the_shared_refresh_token_and_saves_its_successor(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The triggerer's side: the async client reads and rotates the same Variable, off the event loop."""
    import datetime as dt

    from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
    from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

    as_environment_connection(monkeypatch, emulator)
    worker = FeishuVCHook(CONN_ID)  # a worker refreshes first and saves the successor
    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    export_task_id = worker.create_export("meeting_list", start_time=now - dt.timedelta(hours=1), end_time=now)
    after_worker = stored_tokens()
    TOKEN_CACHE.clear()  # the triggerer is another process: nothing cached
    time.sleep(4)  # and the worker's access token has expired
    emulator.finish_now()
    trigger = FeishuVCExportTrigger(export_task_id, feishu_vc_conn_id=CONN_ID, poll_interval=0.2)
    event = await anext(trigger.run())
    assert event.payload["status"] == "success", event.payload
    after_trigger = stored_tokens()
    assert after_trigger["refresh_token"] != after_worker["refresh_token"]  # rotated, and saved for everyone
    assert emulator.count(OAUTH_PATH, status=400) == 0  # the trigger used the worker's successor, not a spent one


def test_the_first_tokens_come_from_the_authorization_code_and_are_stored_for_every_process(
    airflow_db: str, emulator: FeishuVCEmulator
) -> None:
    login_conn = "feishu_vc_login"
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET}
    airflow_cli("connections", "delete", login_conn, check=False)
    airflow_cli("connections", "add", login_conn, "--conn-json", json.dumps(connection))  # the app alone, for now
    store_first = [sys.executable, "-m", "airflow_provider_feishu_vc.user_tokens", login_conn,
                   emulator.options.authorization_code, "https://example.com/feishu/callback"]  # fmt: skip
    done = subprocess.run(store_first, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = airflow_cli("connections", "get", login_conn, "-o", "json").stdout  # some releases log lines first
    extra = json.loads(shown.strip().splitlines()[-1])[0]["extra_dejson"]
    key = store_key(extra["refresh_token"])  # the connection now acts as the user, and names its grant's Variable
    assert "now acts as the user" in done.stdout and key in done.stdout
    saved = stored_tokens(key)
    assert saved["refresh_token"] == extra["refresh_token"] and not emulator.state.refresh_token_spent(
        extra["refresh_token"]
    )
    assert saved["access_token"] not in done.stdout + done.stderr and saved["refresh_token"] not in done.stdout
    again = subprocess.run(store_first, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1 and "invalid_grant" in again.stderr  # an authorization code works once


def test_the_test_button_refreshes_a_user_connection_and_shares_what_it_rotated(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

    emulator.configure(token_ttl=600.0)  # long enough to outlive the airflow CLI calls below
    # Airflow tests a saved connection as a copy under a random id: the grant, not the id, names the tokens.
    extra = {"refresh_token": SEED, "rate_limit_per_minute": 60_000}
    monkeypatch.setenv("AIRFLOW_CONN_ZX8QR2LM", emulator.connection(**extra))
    ok, message = FeishuVCHook("Zx8Qr2Lm").test_connection()
    assert ok and "user access token" in message, message
    rotated = stored_tokens()
    assert rotated["refresh_token"] != SEED and not emulator.state.refresh_token_spent(rotated["refresh_token"])
    TOKEN_CACHE.clear()  # a task is another process
    as_environment_connection(monkeypatch, emulator)
    refreshes = emulator.count(OAUTH_PATH)
    FeishuVCHook(CONN_ID).get_conn().access_token()
    assert emulator.count(OAUTH_PATH) == refreshes  # it used what the Test button saved, no refresh of a spent seed


# -- issue 36, finding 1: a successor whose save failed is saved before the process ends -------------------------

FILE_STORE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError
    from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens

    class FileStore:
        '''The shared store as a JSON file; its first `failures` writes of the tokens fail (an outage).'''

        key = "feishu_vc_user_tokens__file"

        def __init__(self, path, failures):
            self.path, self.failures = Path(path), failures

        def load(self):
            return StoredUserTokens.from_json(self.path.read_text()) if self.path.exists() else None

        def save(self, tokens):
            if self.failures > 0:
                self.failures -= 1
                raise FeishuVCTokenStoreError("Could not write the shared user tokens: the store is down")
            self.path.write_text(tokens.to_json())

        lease = None

        def load_lease(self):
            return self.lease

        def save_lease(self, lease):
            self.lease = lease
    """
)

ENDS_WITHOUT_CLOSE = FILE_STORE + textwrap.dedent(
    """
    from airflow_provider_feishu_vc.client import user_grant
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient

    user_grant.STORE_RETRY_WAITS = (0.01,) * 4
    user_grant.LEASE_SETTLE = 0.01
    user_grant.BACKGROUND_WAITS = (3600.0,)  # the subject is the exit, not the background saver
    user_grant.CLOSE_FLUSH_SECONDS = 0.5
    base_url, app_id, app_secret, seed, path, failures = sys.argv[1:]
    config = ClientConfig(base_url=base_url, app_id=app_id, app_secret=app_secret, refresh_token=seed)
    client = FeishuVCClient(config, token_store=FileStore(path, int(failures)))
    client.access_token()
    print("refreshed; exiting without closing the client")
    """
)


def _end_without_close(emulator: FeishuVCEmulator, path: Path, failures: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", ENDS_WITHOUT_CLOSE, emulator.url, APP_ID, APP_SECRET,
               emulator.options.refresh_token, str(path), str(failures)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_36_1_a_successor_whose_saves_failed_is_saved_at_exit_when_the_store_is_back(
    emulator: FeishuVCEmulator, tmp_path: Path
) -> None:
    """Five saves fail during the refresh (the store is down), the process ends without closing its client: the
    interpreter's exit offers the tokens again and the store, back by then, keeps the live refresh token."""
    path = tmp_path / "store.json"
    done = _end_without_close(emulator, path, failures=6)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads(path.read_text())
    assert saved["generation"] == 1 and not emulator.state.refresh_token_spent(saved["refresh_token"])
    assert "could NOT be saved" not in done.stderr


def test_36_1_a_successor_that_cannot_be_saved_at_exit_is_reported_loudly_with_the_regrant_command(
    emulator: FeishuVCEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "store.json"
    done = _end_without_close(emulator, path, failures=10**6)
    assert not path.exists()
    assert "ERROR" in done.stderr or "could NOT be saved" in done.stderr
    assert "LOST" in done.stderr and "python -m airflow_provider_feishu_vc.user_tokens" in done.stderr
    [issued] = [t for t in emulator.state._refresh_tokens if not emulator.state.refresh_token_spent(t)]
    assert issued not in done.stderr + done.stdout  # the log names no token


def test_36_1_closing_the_client_saves_a_successor_whose_saves_failed(
    emulator: FeishuVCEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_feishu_vc.client import user_grant
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient

    namespace: dict[str, object] = {}
    exec(compile(FILE_STORE, "file_store", "exec"), namespace)  # the same store as the subprocesses use
    monkeypatch.setattr(user_grant, "STORE_RETRY_WAITS", (0.01,) * 4)
    monkeypatch.setattr(user_grant, "LEASE_SETTLE", 0.01)
    monkeypatch.setattr(user_grant, "BACKGROUND_WAITS", (3600.0,))
    path = tmp_path / "store.json"
    store = namespace["FileStore"](path, 7)  # type: ignore[operator]
    config = ClientConfig(
        base_url=emulator.url, app_id=APP_ID, app_secret=APP_SECRET, refresh_token=emulator.options.refresh_token
    )
    client = FeishuVCClient(config, token_store=store)
    client.access_token()
    assert not path.exists()  # all five saves of the refresh failed
    client.close()
    saved = json.loads(path.read_text())
    assert saved["generation"] == 1 and not emulator.state.refresh_token_spent(saved["refresh_token"])


def test_a_successor_whose_save_was_cut_short_is_offered_at_exit(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's time limit (or Ctrl-C) that strikes while the new tokens are being saved ends the fetch without a
    failed save: before, nothing handed the set to the exit flush (only a close, which code using the hook may
    never reach) and no ERROR said it could be lost; the fetch's turn stayed taken until its flow was collected."""
    from airflow_provider_feishu_vc.client import grant_process, unsaved_tokens, user_grant
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.client.stored_tokens import RefreshLease, StoredUserTokens
    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient

    class TimeLimit(BaseException):
        """What a task's ``execution_timeout`` raises (a BaseException, from a signal handler)."""

    class CutShortStore:
        key = "feishu_vc_user_tokens__cut_short"

        def __init__(self) -> None:
            self.tokens: StoredUserTokens | None = None
            self.lease: RefreshLease | None = None
            self.cut = False

        def load(self) -> StoredUserTokens | None:
            return self.tokens

        def save(self, tokens: StoredUserTokens) -> None:
            if not self.cut:
                self.cut = True
                raise TimeLimit  # the first save never got through
            self.tokens = tokens

        def load_lease(self) -> RefreshLease | None:
            return self.lease

        def save_lease(self, lease: RefreshLease) -> None:
            self.lease = lease

    monkeypatch.setattr(user_grant, "LEASE_SETTLE", 0.01)
    monkeypatch.setattr(user_grant, "CLOSE_FLUSH_SECONDS", 1.0)
    monkeypatch.setattr(grant_process, "PROCESS", grant_process.ProcessGrants())
    monkeypatch.setattr(unsaved_tokens, "_UNSAVED", {})
    monkeypatch.setattr(unsaved_tokens, "_STORES", {}, raising=False)
    store = CutShortStore()
    config = ClientConfig(
        base_url=emulator.url, app_id=APP_ID, app_secret=APP_SECRET, refresh_token=emulator.options.refresh_token
    )
    client = FeishuVCClient(config, token_store=store)  # type: ignore[arg-type]
    with pytest.raises(TimeLimit):
        client.access_token()
    assert store.cut and store.tokens is None
    unsaved_tokens.flush_all_at_exit()  # what the interpreter's exit runs
    assert store.tokens is not None and store.tokens.generation == 1
    assert not emulator.state.refresh_token_spent(store.tokens.refresh_token)
    assert store.lease is not None and store.lease.released
