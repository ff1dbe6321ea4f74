"""FeishuVCExportOperator (create, wait, download in one task) and retries that resume what an earlier try started,
run as real DAG runs (dag.test) against the emulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import ModuleType

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.compat import AIRFLOW_VERSION, TaskDeferred
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCExportOperator
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from tests.conftest import UNPACED, load_dag_file

CREATE_PATH = "/open-apis/vc/v1/exports/meeting_list"
DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"
#: Airflow 3.3 keeps task state across tries; before it, a retry cannot know what an earlier try started.
TASK_STATE = AIRFLOW_VERSION >= (3, 3)
ONE_DAY = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}


@pytest.fixture
def dags(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    emulator.configure(export_delay=3600, processing_polls=1)  # processing at the first check, done at the next
    return load_dag_file("feishu_vc_test_dags.py")


def landed_files(tmp_path: Path, dag_id: str) -> list[Path]:
    """Every file under the DAG's default folder (``<dag_id>/<run_id>/<task_id>/``), hidden ones included."""
    return sorted(path for path in (tmp_path / dag_id).rglob("*") if path.is_file())


@pytest.mark.parametrize("shape", ["polling", "deferrable"])
def test_one_task_creates_waits_and_lands_the_file(
    dags: ModuleType, emulator: FeishuVCEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str], shape: str
) -> None:
    dag = getattr(dags, f"one_task_{shape}_dag")
    run = dag.test()
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    [export_task_id] = emulator.export_ids()
    [landed] = landed_files(tmp_path, dag.dag_id)
    assert landed.name == f"视频会议_meeting_list_{export_task_id}.xlsx" and landed.read_bytes()[:2] == b"PK"
    assert emulator.count(CREATE_PATH) == 1 and emulator.count(DOWNLOAD_PATH) == 1
    assert ("deferring to the triggerer" in output) == (shape == "deferrable")
    day_start = int(dt.datetime(2026, 11, 22, 16, tzinfo=dt.timezone.utc).timestamp())  # 2026-11-23 in Shanghai
    assert emulator.export(export_task_id).body == {"start_time": str(day_start), "end_time": str(day_start + 86_400)}


@pytest.mark.parametrize("shape", ["polling", "deferrable"])
def test_a_download_cut_mid_body_is_retried_on_the_same_export(
    dags: ModuleType,
    emulator: FeishuVCEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    shape: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", emulator.connection(**UNPACED, max_retries=0))
    emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, after_bytes=1000)  # the first try's download only
    dag = getattr(dags, f"one_task_{shape}_dag")
    run = dag.test()
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    assert emulator.count(DOWNLOAD_PATH) == 2  # cut once, then whole
    [landed] = landed_files(tmp_path, dag.dag_id)  # once, and no partial file beside it
    if TASK_STATE:
        [export_task_id] = emulator.export_ids()  # the retry reused the export of the first try
        assert landed.name.endswith(f"_{export_task_id}.xlsx")
        assert f"Resuming export {export_task_id}, started by an earlier try (done)" in output
    else:  # documented: before Airflow 3.3 every try starts a new export
        assert emulator.count(CREATE_PATH) == 2


@pytest.mark.parametrize("shape", ["polling", "deferrable"])
def test_a_busy_limit_at_the_status_check_delays_the_wait_not_fails_it(
    dags: ModuleType, emulator: FeishuVCEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str], shape: str
) -> None:
    # More 429s in a row than the connection's 5 retries, at the first status check after the create.
    emulator.inject(Fault.RATE_LIMIT, path="/open-apis/vc/v1/exports/7", times=6, reset=0.01)
    dag = getattr(dags, f"one_task_{shape}_dag")
    run = dag.test()
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    [export_task_id] = emulator.export_ids()
    assert "Resuming export" not in output  # one try: the refusals did not fail it
    assert f"Could not check Feishu export {export_task_id} this time" in output
    [landed] = landed_files(tmp_path, dag.dag_id)
    assert landed.name.endswith(f"_{export_task_id}.xlsx") and emulator.count(CREATE_PATH) == 1


def test_a_retry_after_a_failed_export_starts_a_new_one(
    dags: ModuleType, emulator: FeishuVCEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.state.fail_next.append("no meetings in range")
    run = dags.one_task_polling_dag.test()
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    failed, created = emulator.export_ids()
    assert emulator.export(failed).fail_msg == "no meetings in range"
    [landed] = landed_files(tmp_path, dags.one_task_polling_dag.dag_id)
    assert landed.name.endswith(f"_{created}.xlsx")
    if TASK_STATE:
        assert f"Export {failed} of an earlier try failed (no meetings in range); starting a new one" in output


def test_a_retried_create_task_reuses_its_export(
    dags: ModuleType, emulator: FeishuVCEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    run = dags.create_retry_dag.test()
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    assert "worker lost after starting export" in output  # the first try did die
    if TASK_STATE:
        [export_task_id] = emulator.export_ids()
        assert f"Resuming export {export_task_id}, started by an earlier try (processing)" in output
    else:
        assert len(emulator.export_ids()) == 2


def test_an_export_gone_from_feishu_is_started_anew(
    emulator: FeishuVCEmulator, connection_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_feishu_vc.operators.tries import EXPORT_KEY
    from tests.task_state import TaskState, task_context

    operator = FeishuVCExportOperator(task_id="export", export_type="meeting_list", deferrable=True, **ONE_DAY)
    context = task_context(TaskState())
    _, request = operator.resolved_request(context, FeishuVCHook(), **operator.destination_parts(context))
    state = TaskState({EXPORT_KEY: {"export_task_id": "7111325589855790000", "request": request}})  # Feishu has none
    with pytest.raises(TaskDeferred):
        operator.execute(task_context(state))  # type: ignore[arg-type]
    [export_task_id] = emulator.export_ids()
    assert state.values[EXPORT_KEY] == {"export_task_id": export_task_id, "request": request, "landed": None}
    assert "Export 7111325589855790000 of an earlier try is gone from Feishu" in "".join(capfd.readouterr())


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"status": "failed", "export_task_id": "5", "message": "Feishu export 5 failed: boom"}, "export 5 failed"),
        ({"status": "timeout", "export_task_id": "5", "message": "not done by the deadline"}, "deadline"),
        ({"status": "error", "export_task_id": "5", "message": "Waiting failed: code 121005"}, "121005"),
        ({"status": "success", "export_task_id": "5", "message": "done"}, "carries no file_token"),
        ({"status": "maybe"}, "unexpected trigger event"),
        (None, "unexpected trigger event None"),
    ],
)
def test_resume_checks_the_event_and_leaves_every_failure_retryable(event: object, message: str) -> None:
    operator = FeishuVCExportOperator(task_id="export", export_type="meeting_list", **ONE_DAY)
    with pytest.raises(FeishuVCError, match=message) as raised:
        operator.execute_complete({}, event, export_task_id="5")  # type: ignore[arg-type]
    assert type(raised.value).__name__ != "AirflowFailException"  # a retry resumes or starts anew


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poll_interval": 0}, "poll_interval: must be a positive number of seconds"),
        ({"timeout": -5}, "timeout: must be a positive number of seconds or None"),
    ],
)
def test_bad_wait_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(FeishuVCConfigError, match=message):
        FeishuVCExportOperator(task_id="export", export_type="meeting_list", **options)  # type: ignore[arg-type]


def test_every_parameter_is_documented() -> None:
    import inspect

    documented = FeishuVCExportOperator.__doc__ or ""
    parameters = inspect.signature(FeishuVCExportOperator.__init__).parameters
    own = [name for name in parameters if name not in ("self", "kwargs")]
    assert [name for name in own if f":param {name}:" not in documented] == []
