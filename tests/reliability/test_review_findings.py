"""The defects a code review found in user tokens, rate budgets, resuming and landing (issue #26), one test (or
more) per finding, each written to fail on the code before the fix. Real parts: the emulator over HTTP, Airflow
Variables in a real metadata DB, real processes where processes matter, flows driven by scripts where only the
order of steps matters."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_feishu_vc.client import user_grant
from airflow_provider_feishu_vc.client.budget import AppBudgets, RateBudget
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.client.protocol import MaskSecret, RetryPolicy, SharedUserTokens, call_with_retries
from airflow_provider_feishu_vc.client.token_cache import TokenCache
from airflow_provider_feishu_vc.compat import TaskDeferred
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCCreateExportOperator, FeishuVCExportOperator
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from tests.client.scripted import FakeClock, Script, answer
from tests.conftest import APP_ID, APP_SECRET, UNPACED, airflow_cli, load_dag_file
from tests.task_state import TaskState, task_context
from tests.test_user_tokens import (
    CONN_ID,
    OAUTH_PATH,
    STORE_KEY,
    as_environment_connection,
    store_key,
    stored_tokens,
)

POLICY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02)
CREATE_PATH = "/open-apis/vc/v1/exports/meeting_list"
DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"
DAY_A = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}
DAY_B = {"start_time": "2026-11-24T00:00:00+08:00", "end_time": "2026-11-25T00:00:00+08:00"}


class VariableWrites:
    """Makes writes of one Airflow Variable fail (as when the API server restarts), counting the attempts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, key: str, failures: int = 10**9, delay: float = 0.0) -> None:
        from airflow_provider_feishu_vc import compat

        self.key, self.failures, self.delay, self.failed = key, failures, delay, 0
        self._real = compat.set_variable
        monkeypatch.setattr(compat, "set_variable", self.set_variable)

    def set_variable(self, key: str, value: str, description: str) -> None:
        if key == self.key and self.failed < self.failures:
            self.failed += 1
            raise ConnectionError("the API server is restarting")
        self._real(key, value, description)

    def heal(self) -> None:
        self.failures = 0


@pytest.fixture
def quick_store_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store writes retried after 0.05 s instead of seconds: the subject is that they are retried, not how long."""
    monkeypatch.setattr(user_grant, "STORE_RETRY_WAITS", (0.05, 0.05, 0.05))


# -- 1. a failed Variable write loses the grant ------------------------------------------------------------------


def test_1_a_failed_token_write_is_retried_so_the_other_processes_get_the_successor(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, quick_store_retries: None
) -> None:
    as_environment_connection(monkeypatch, emulator)
    writes = VariableWrites(monkeypatch, STORE_KEY, failures=2)
    FeishuVCHook(CONN_ID).get_conn().access_token()
    assert writes.failed == 2
    saved = stored_tokens()  # written on the third attempt
    assert not emulator.state.refresh_token_spent(saved["refresh_token"])


def test_1_a_process_holding_newer_tokens_than_the_store_refreshes_with_them_not_with_the_spent_stored_one(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, quick_store_retries: None
) -> None:
    as_environment_connection(monkeypatch, emulator)
    client = FeishuVCHook(CONN_ID).get_conn()
    client.access_token()  # R0 -> R1, saved
    time.sleep(4.1)  # the user token lives 4 s
    writes = VariableWrites(monkeypatch, STORE_KEY)  # every write of the tokens fails from now on
    client.access_token()  # R1 -> R2 at Feishu; the store still holds R1, spent
    assert writes.failed >= 1
    writes.heal()
    time.sleep(4.1)
    client.access_token()  # must refresh with R2, which only this process holds
    assert emulator.count(OAUTH_PATH, status=400) == 0, "the spent R1 was sent to Feishu"
    assert emulator.count(OAUTH_PATH, status=200) == 3
    saved = stored_tokens()
    assert not emulator.state.refresh_token_spent(saved["refresh_token"]) and saved["generation"] == 3


# -- 2. every process refreshes the same single-use token at the same moment ----------------------------------

SLOW_STORE_REFRESH_AT = textwrap.dedent(
    """
    import hashlib, sys, time
    from airflow_provider_feishu_vc import compat
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

    real_set = compat.set_variable
    def slow_set(key, value, description):
        time.sleep(float(sys.argv[3]))  # a write through a busy API server
        real_set(key, value, description)
    compat.set_variable = slow_set

    client = FeishuVCHook(sys.argv[1]).get_conn()
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    print("token", hashlib.sha256(client.access_token().encode()).hexdigest())
    """
)


def test_2_processes_racing_a_refresh_through_a_slow_store_send_feishu_exactly_one_refresh(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_environment_connection(monkeypatch, emulator)
    emulator.configure(token_ttl=120.0)  # tokens that outlive the slow saves (Feishu's live two hours)
    start_at = time.time() + 6
    command = [sys.executable, "-c", SLOW_STORE_REFRESH_AT, CONN_ID, str(start_at), "2.5"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [worker.communicate(timeout=180) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]  # no 20064 (nor anything else) reached the caller
    tokens_seen = {line for out, _ in outputs for line in out.splitlines() if line.startswith("token ")}
    assert len(tokens_seen) == 1
    assert emulator.count(OAUTH_PATH) == 1, "more than one process spent the refresh token"
    assert not emulator.state.refresh_token_spent(stored_tokens()["refresh_token"])


def test_2_each_process_finds_the_user_token_stale_at_its_own_moment() -> None:
    """Processes spread the moment they refresh over the last minutes of a token's life, so that the first one's
    save is usually there before the others look."""
    margins = {user_grant.refresh_margin(7200.0, spread) for spread in (0.0, 0.5, 0.999)}
    assert len(margins) == 3 and min(margins) >= 300 and max(margins) <= 600


# -- 3. resuming ignores what the export was for -----------------------------------------------------------------


@pytest.fixture
def exports_here(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    emulator.configure(export_delay=0)
    return tmp_path


def one_task(**options: Any) -> FeishuVCExportOperator:
    return FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", deferrable=False, poll_interval=0.1, **options
    )


def test_3_a_retry_with_other_fields_starts_a_new_export(
    exports_here: Path, emulator: FeishuVCEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    state = TaskState()
    emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, after_bytes=100)
    with pytest.raises(FeishuVCError):
        one_task(**DAY_A, destination=f"{exports_here}/a/").execute(task_context(state))  # type: ignore[arg-type]
    [first] = emulator.export_ids()
    landed = one_task(**DAY_B, destination=f"{exports_here}/a/").execute(task_context(state))  # type: ignore[arg-type]
    first_export, second = emulator.export_ids()
    assert first_export == first and landed.endswith(f"_{second}.xlsx")
    assert emulator.export(second).body["start_time"] != emulator.export(first).body["start_time"]
    assert f"Export {first} of an earlier try was for another request" in "".join(capfd.readouterr())


def test_3_a_retry_with_another_destination_starts_a_new_export(exports_here: Path, emulator: FeishuVCEmulator) -> None:
    state = TaskState()
    emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, after_bytes=100)
    with pytest.raises(FeishuVCError):
        one_task(**DAY_A, destination=f"{exports_here}/a/").execute(task_context(state))  # type: ignore[arg-type]
    one_task(**DAY_A, destination=f"{exports_here}/b/").execute(task_context(state))  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 2


def test_3_the_same_request_after_a_failed_try_still_resumes(exports_here: Path, emulator: FeishuVCEmulator) -> None:
    state = TaskState()
    emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, after_bytes=100)
    with pytest.raises(FeishuVCError):
        one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]
    one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 1 and emulator.count(DOWNLOAD_PATH) == 2


def test_3_a_landed_file_drops_the_state_so_clearing_a_successful_task_exports_again(
    exports_here: Path, emulator: FeishuVCEmulator
) -> None:
    state, operator = TaskState(), one_task(**DAY_A)
    first = operator.execute(task_context(state))  # type: ignore[arg-type]
    operator.post_execute(task_context(state), first)  # type: ignore[arg-type]  # as the task runner does
    assert state.values == {}, "the task's state still names an export whose file has landed"
    second = one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]  # cleared and run again
    assert emulator.count(CREATE_PATH) == 2 and first != second


def test_3_the_create_operator_reuses_an_export_only_for_the_same_request(
    emulator: FeishuVCEmulator, connection_env: str
) -> None:
    state = TaskState()

    class DiesAfterCreating(FeishuVCCreateExportOperator):
        def execute(self, context: Any) -> str:
            super().execute(context)
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        DiesAfterCreating(task_id="create", export_type="meeting_list", **DAY_A).execute(task_context(state))
    [first] = emulator.export_ids()
    same = FeishuVCCreateExportOperator(task_id="create", export_type="meeting_list", **DAY_A)
    assert same.execute(task_context(state)) == first  # type: ignore[arg-type]  # a retry of the same request
    changed = FeishuVCCreateExportOperator(task_id="create", export_type="meeting_list", **DAY_B)
    second = changed.execute(task_context(state))  # type: ignore[arg-type]  # fields changed, task cleared
    assert second != first and emulator.export_ids() == [first, second]
    changed.post_execute(task_context(state), second)  # type: ignore[arg-type]  # the task succeeded
    assert state.values == {}, "a clear after success would return the old export"


def test_3_a_file_gone_from_feishu_drops_the_export_so_the_next_try_creates_a_new_one(
    exports_here: Path, emulator: FeishuVCEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    state = TaskState()
    emulator.inject(Fault.HTTP_ERROR, path=DOWNLOAD_PATH, status=404, code=121004)
    with pytest.raises(FeishuVCAPIError, match="121004"):
        one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]
    assert state.values == {}, "the next try would download the expired file again"
    one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 2


def test_3_state_kept_by_an_older_release_is_not_resumed_blindly(
    exports_here: Path, emulator: FeishuVCEmulator
) -> None:
    other = FeishuVCHook().create_export("meeting_list", **DAY_B)  # some other request's export
    state = TaskState({"feishu_vc_export_task_id": other})  # what release 0.1.0 kept: an id, no fingerprint
    landed = one_task(**DAY_A).execute(task_context(state))  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 2 and not landed.endswith(f"_{other}.xlsx")


# -- 4. junk rate-limit headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["inf", "1e309", "nan", "-3", "9999"])
def test_4_a_junk_reset_header_never_pauses_longer_than_feishus_window(reset: str) -> None:
    from airflow_provider_feishu_vc.client import api

    clock = FakeClock()
    budgets = AppBudgets(per_minute=100, clock=clock)
    refused = answer(429, {"x-ogw-ratelimit-reset": reset, "x-ogw-ratelimit-limit": "100"}, code=99991400)
    script = Script([refused, answer(code=0, data={"status": 1})], clock=clock)
    script.run(api.get_export("7111", POLICY, budgets), max_steps=50)
    assert script.sleeps and all(math.isfinite(s) and 0 <= s <= 60 for s in script.sleeps), script.sleeps


@pytest.mark.parametrize("limit", ["0.5", "0", "-1", "inf", "nan", "abc", "2.7"])
def test_4_a_junk_limit_header_never_lets_the_pace_exceed_the_limit(limit: str) -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=100, clock=clock)
    refused = answer(429, {"x-ogw-ratelimit-reset": "0.1", "x-ogw-ratelimit-limit": limit}, code=99991400)
    script = Script([refused, answer(code=0, data={"status": 1})], clock=clock)
    script.run(call_with_retries(_status_request(budget), POLICY), max_steps=50)
    assert budget.pace <= budget.most and budget.window_seconds > 0 and budget.least <= budget.most


def test_4_when_retries_run_out_the_reset_still_pauses_every_other_caller() -> None:
    clock = FakeClock()
    budget = RateBudget(per_minute=100, clock=clock)
    refused = answer(429, {"x-ogw-ratelimit-reset": "20", "x-ogw-ratelimit-limit": "100"}, code=99991400)
    with pytest.raises(FeishuVCAPIError):
        Script([refused], clock=clock).run(call_with_retries(_status_request(budget), RetryPolicy(max_retries=0)))
    assert budget.paused(), "other callers were not told to wait for Feishu's reset"


def _status_request(budget: RateBudget) -> Any:
    from airflow_provider_feishu_vc.client.protocol import HttpRequest

    return HttpRequest("GET", "/open-apis/vc/v1/exports/7111", budget=budget)


# -- 5. new tokens are saved before they are masked -------------------------------------------------------------


def test_5_new_user_tokens_are_masked_before_anything_tries_to_store_them() -> None:
    config = ClientConfig(base_url="https://open.feishu.cn", app_id="cli_1", app_secret="s", refresh_token="r-0")
    script = Script([answer(code=0, access_token="u-new", expires_in=7200, refresh_token="r-new")])
    script.run(TokenCache().renew(config, POLICY, shared=True))
    steps = script.steps
    save = next(i for i, step in enumerate(steps) if isinstance(step, SharedUserTokens) and _is_save(step))
    masked_first = {step.value for step in steps[:save] if isinstance(step, MaskSecret)}
    assert {"u-new", "r-new"} <= masked_first


def _is_save(step: SharedUserTokens) -> bool:
    return getattr(step, "action", None) == "save" or getattr(step, "save", None) is not None


def test_5_a_failed_save_logs_no_token(
    user_connection: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, quick_store_retries: None
) -> None:
    """The store's error quotes what it tried to write (as SQLAlchemy's errors quote their parameters): by then
    the masker must know both tokens."""
    from airflow_provider_feishu_vc import compat

    as_environment_connection(monkeypatch, emulator)
    seen: list[str] = []
    real_set = compat.set_variable

    def failing_set(key: str, value: str, description: str) -> None:
        if key != STORE_KEY:
            return real_set(key, value, description)
        tokens_json = json.loads(value)
        seen.append(_redact(value))
        raise RuntimeError(f"INSERT failed [parameters: ({key!r}, {value!r})] {tokens_json['refresh_token']}")

    monkeypatch.setattr(compat, "set_variable", failing_set)
    FeishuVCHook(CONN_ID).get_conn().access_token()
    assert seen and all("u-" not in text and "ur-" not in text for text in seen), seen


def _redact(text: str) -> str:
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # older layouts
        from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore[no-redef]
    return str(redact(text))


# -- 6. the first-token CLI says it stored tokens when the store failed ----------------------------------------

FAILING_STORE_CLI = textwrap.dedent(
    """
    import sys
    from airflow_provider_feishu_vc import compat, user_tokens

    def down(key, value, description):
        raise ConnectionError("the metadata DB is unreachable")

    compat.set_variable = down
    sys.exit(user_tokens.main(sys.argv[1:]))
    """
)


def test_6_the_first_token_command_fails_loudly_when_the_tokens_cannot_be_stored(
    airflow_db: str, emulator: FeishuVCEmulator
) -> None:
    login_conn = "feishu_vc_login_fails"
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET}
    airflow_cli("connections", "delete", login_conn, check=False)
    airflow_cli("connections", "add", login_conn, "--conn-json", json.dumps(connection))
    command = [sys.executable, "-c", FAILING_STORE_CLI, login_conn, emulator.options.authorization_code,
               "https://example.com/cb"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Stored" not in done.stdout and "NOT stored" in done.stderr and "sign in again" in done.stderr
    shown = airflow_cli("connections", "get", login_conn, "-o", "json").stdout
    assert "refresh_token" not in json.loads(shown.strip().splitlines()[-1])[0]["extra_dejson"]


def test_6_for_an_environment_connection_the_command_says_what_to_add_and_the_instructions_work(
    airflow_db: str, emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_conn = "feishu_vc_from_env"
    monkeypatch.setenv(f"AIRFLOW_CONN_{env_conn.upper()}", emulator.connection(**UNPACED))
    store_first = [sys.executable, "-m", "airflow_provider_feishu_vc.user_tokens", env_conn,
                   emulator.options.authorization_code, "https://example.com/cb"]  # fmt: skip
    done = subprocess.run(store_first, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout
    [key] = {word.strip(".,:;`'\"") for word in said.split() if word.strip(".,:;`'\"").startswith("feishu_vc_user_")}
    assert f"airflow variables get {key}" in said and '"grant"' in said and "refresh_token" in said
    # Follow the instructions: read the grant from the Variable and give it to the connection as refresh_token.
    grant = json.loads(airflow_cli("variables", "get", key).stdout.strip().splitlines()[-1])["grant"]
    assert grant not in said + done.stderr  # the command printed no token
    assert store_key(grant) == key
    monkeypatch.setenv(f"AIRFLOW_CONN_{env_conn.upper()}", emulator.connection(refresh_token=grant, **UNPACED))
    refreshes = emulator.count(OAUTH_PATH)
    # Another process of the deployment (this test process reads Variables with a Fernet key of its own).
    use = (
        "import sys; from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook; "
        "print(FeishuVCHook(sys.argv[1]).get_conn().access_token()[:2])"
    )
    used = subprocess.run([sys.executable, "-c", use, env_conn], capture_output=True, text=True, timeout=120)
    # The last line: Airflow 3.2 logs its database plugins' set-up to stdout first.
    assert used.returncode == 0 and used.stdout.strip().splitlines()[-1] == "u-", used.stderr[-3000:]
    assert emulator.count(OAUTH_PATH) == refreshes  # it used the stored access token, no refresh


# -- 7. local landing checks, then renames ----------------------------------------------------------------------


def test_7_two_writers_to_one_local_file_never_replace_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The later writer passes its existence check just before the other lands: it must still fail, not
    replace."""
    from airflow_provider_feishu_vc.hooks import landing

    target = ObjectStoragePath((tmp_path / "day.xlsx").as_uri())
    first, second = landing.Landing.for_target(target, False), landing.Landing.for_target(target, False)
    first.open().write(b"first writer")
    second.open().write(b"second writer")
    real_refuse = landing.refuse_existing
    outcomes: dict[str, str] = {}

    def finish(name: str, writer: Any) -> None:
        try:
            writer.finish()
            outcomes[name] = "landed"
        except FeishuVCConfigError:
            writer.abandon()
            outcomes[name] = "refused"

    def check_then_the_other_lands(path: Any, overwrite: bool) -> None:
        real_refuse(path, overwrite)
        if "first" not in outcomes and not getattr(first, "started", False):
            first.started = True  # type: ignore[attr-defined]
            finish("first", first)

    monkeypatch.setattr(landing, "refuse_existing", check_then_the_other_lands)
    finish("second", second)
    if "first" not in outcomes:  # nothing ran between the second writer's check and its landing: the first lands now
        finish("first", first)
    content = (tmp_path / "day.xlsx").read_bytes()
    assert sorted(outcomes.values()) == ["landed", "refused"], outcomes
    [winner] = [name for name, outcome in outcomes.items() if outcome == "landed"]
    assert content == f"{winner} writer".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["day.xlsx"]  # no .part file left


def test_7_mapped_exports_with_the_same_file_name_land_in_folders_of_their_own(
    airflow_db: str,
    emulator: FeishuVCEmulator,
    connection_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    emulator.configure(export_delay=0)
    emulator.state.download_filename = "meetings.xlsx"  # every export's file has the same name
    dags: ModuleType = load_dag_file("feishu_vc_test_dags.py")
    run = dags.one_task_mapped_dag.test()
    assert run.state == "success", "".join(capfd.readouterr())[-5000:]
    landed = sorted(tmp_path.rglob("meetings.xlsx"))
    assert len(landed) == 3 and len({p.parent for p in landed}) == 3


def test_the_one_task_operator_bounds_its_wait_by_default(emulator: FeishuVCEmulator, connection_env: str) -> None:
    emulator.configure(export_delay=3600)
    operator = FeishuVCExportOperator(task_id="export", export_type="meeting_list", deferrable=True, **DAY_A)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(task_context(TaskState()))  # type: ignore[arg-type]
    deadline = deferred.value.trigger.deadline
    assert deadline is not None and time.time() < deadline <= time.time() + 24 * 3600
    assert deferred.value.timeout is not None
    assert dt.timedelta(seconds=deadline - time.time()) <= deferred.value.timeout
