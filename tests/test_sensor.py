"""FeishuVCExportSensor: deferral, every resume event, and real runs in poke, reschedule and deferrable modes."""

from __future__ import annotations

import datetime as dt
import importlib
import io
import time
from types import ModuleType

import openpyxl
import pendulum
import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_feishu_vc.client.errors import FeishuVCError
from airflow_provider_feishu_vc.compat import AirflowFailException, AirflowSensorTimeout, TaskDeferred
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger
from tests.conftest import APP_SECRET, load_dag_file

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def load_test_dags() -> ModuleType:
    return load_dag_file("feishu_vc_test_dags.py")


def new_export(emulator: FeishuVCEmulator) -> str:
    return FeishuVCHook().create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)


def sensor(**options: object) -> FeishuVCExportSensor:
    return FeishuVCExportSensor(
        task_id="wait", **{"export_task_id": "1", "poke_interval": 7, "timeout": 120, **options}
    )


def test_deferrable_sensor_checks_once_then_defers(emulator: FeishuVCEmulator, connection_env: str) -> None:
    export_task_id = new_export(emulator)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(export_task_id=export_task_id, deferrable=True).execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, FeishuVCExportTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == dt.timedelta(seconds=120)
    _, kwargs = trigger.serialize()
    assert kwargs["export_task_id"] == export_task_id and kwargs["poll_interval"] == 7.0
    assert kwargs["feishu_vc_conn_id"] == "feishu_vc_default"
    assert before + 120 <= kwargs["deadline"] <= time.time() + 120  # an absolute wall-clock deadline
    assert emulator.count(f"/open-apis/vc/v1/exports/{export_task_id}") == 1


def test_deferrable_sensor_returns_at_once_when_already_done(emulator: FeishuVCEmulator, connection_env: str) -> None:
    export_task_id = new_export(emulator)
    emulator.finish_now()
    result = sensor(export_task_id=export_task_id, deferrable=True).execute({})  # type: ignore[arg-type]
    assert result == {"export_task_id": export_task_id, "file_token": emulator.export(export_task_id).file_token}


def test_deferrable_sensor_fails_at_once_when_already_failed(emulator: FeishuVCEmulator, connection_env: str) -> None:
    emulator.state.fail_next.append("no meetings in range")
    export_task_id = new_export(emulator)
    emulator.finish_now()
    with pytest.raises(AirflowFailException, match=f"{export_task_id} failed: no meetings in range"):
        sensor(export_task_id=export_task_id, deferrable=True).execute({})  # type: ignore[arg-type]


STATUS_PREFIX = "/open-apis/vc/v1/exports/7"  # status queries only: export ids start with 7
#: More refusals in a row than the connection's retries (5 more attempts): the check itself gives up.
BEYOND_RETRIES = 6


def test_deferrable_sensor_defers_when_its_first_check_meets_a_busy_limit(
    emulator: FeishuVCEmulator, connection_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    export_task_id = new_export(emulator)
    emulator.inject("rate_limit", path=STATUS_PREFIX, times=BEYOND_RETRIES, reset=0.01)
    with pytest.raises(TaskDeferred) as deferred:
        sensor(export_task_id=export_task_id, deferrable=True).execute({})  # type: ignore[arg-type]
    assert isinstance(deferred.value.trigger, FeishuVCExportTrigger)
    assert emulator.count(f"/open-apis/vc/v1/exports/{export_task_id}") == 1  # one look: the trigger retries
    output = "".join(capfd.readouterr())
    assert f"Could not check Feishu export {export_task_id} this time" in output and "99991400" in output


def test_polling_sensor_treats_a_transient_failure_as_not_done_yet(
    emulator: FeishuVCEmulator, connection_env: str
) -> None:
    export_task_id = new_export(emulator)
    waiting = sensor(export_task_id=export_task_id)
    emulator.inject("gateway_html", path=STATUS_PREFIX, times=BEYOND_RETRIES, status=502)
    assert waiting.poke({}) is False  # type: ignore[arg-type]
    emulator.finish_now()
    done = waiting.poke({})  # type: ignore[arg-type]
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value == {
        "export_task_id": export_task_id,
        "file_token": emulator.export(export_task_id).file_token,
    }


def test_a_permanent_error_still_ends_the_wait_at_once(emulator: FeishuVCEmulator, connection_env: str) -> None:
    emulator.inject("error_code", path=STATUS_PREFIX, code=121004, status=400)
    with pytest.raises(FeishuVCError, match="121004"):
        sensor(export_task_id="7000000000000000001", deferrable=True).execute({})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "raised", "message"),
    [
        ({"status": "failed", "export_task_id": "5", "message": "Feishu export 5 failed: boom"}, AirflowFailException,
         "export 5 failed: boom"),
        ({"status": "timeout", "export_task_id": "5", "message": "not done by the deadline"}, AirflowSensorTimeout,
         "deadline"),
        ({"status": "error", "export_task_id": "5", "message": "Waiting for Feishu export 5 failed: code 121005",
          "code": 121005}, FeishuVCError, "121005"),
        (None, FeishuVCError, "unexpected trigger event None"),
        ({"status": "maybe"}, FeishuVCError, "unexpected trigger event"),
        ("success", FeishuVCError, "unexpected trigger event"),
        ({"status": "success", "export_task_id": "5"}, FeishuVCError, "no file_token"),
    ],
)  # fmt: skip
def test_execute_complete_fails_on_anything_but_success(event: object, raised: type, message: str) -> None:
    with pytest.raises(raised, match=message):
        sensor(export_task_id="5").execute_complete({}, event)  # type: ignore[arg-type]


def test_execute_complete_returns_the_xcom_on_success() -> None:
    event = {"status": "success", "export_task_id": "5", "file_token": "ab+c/d==", "message": "done"}
    assert sensor(export_task_id="5").execute_complete({}, event) == {"export_task_id": "5", "file_token": "ab+c/d=="}  # type: ignore[arg-type]


def test_default_deferrable_follows_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_provider_feishu_vc.sensors.feishu_vc as module

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    reloaded = importlib.reload(module)
    assert reloaded.FeishuVCExportSensor(task_id="s", export_task_id="1").deferrable is True
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
    assert importlib.reload(module).FeishuVCExportSensor(task_id="s", export_task_id="1").deferrable is False


@pytest.mark.parametrize("dag_name", ["poke_dag", "reschedule_dag", "deferrable_dag"])
def test_whole_dag_runs_in_every_sensor_mode(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, capfd: pytest.CaptureFixture[str], dag_name: str
) -> None:
    emulator.configure(export_delay=3600, processing_polls=1)  # processing at the first check, done at the next
    dag = getattr(load_test_dags(), dag_name)
    run = dag.test(logical_date=pendulum.now("Asia/Shanghai").start_of("day"))
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    [export_task_id] = emulator.export_ids()
    polls = emulator.count(f"/open-apis/vc/v1/exports/{export_task_id}")
    assert polls >= 2  # processing at first, then done
    if dag_name == "deferrable_dag":
        assert "deferring to the triggerer" in output
    else:
        assert "still processing" in output
    [landed] = [line for line in output.splitlines() if "Feishu export file is at memory://" in line]
    uri = landed.split("Feishu export file is at ")[1].split()[0]
    from airflow.sdk import ObjectStoragePath

    sheet = openpyxl.load_workbook(io.BytesIO(ObjectStoragePath(uri).read_bytes()), read_only=True).active
    assert sum(1 for _ in sheet.iter_rows()) == 1 + 24  # yesterday, one meeting an hour
    # Nothing secret reached the task logs.
    assert APP_SECRET not in output
    for token in emulator.issued_tokens():
        assert token not in output


def test_timeout_with_soft_fail_skips(
    airflow_db: str, connection_env: str, emulator: FeishuVCEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.configure(export_delay=3600)
    FeishuVCHook().create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)
    run = load_test_dags().soft_fail_dag.test()
    output = "".join(capfd.readouterr())
    [ti] = run.get_task_instances()
    assert ti.state == "skipped", output[-4000:]
