"""What a new user met writing a first DAG from the docs (issue #25), one test each: short import paths, the
connection a deferred wait cannot see under `airflow dags test`, where the data-interval timetable comes from, times
in messages as the user wrote them, and the emulator's help."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCCreateExportOperator

SHORT_NAMES = {
    "airflow_provider_feishu_vc": ["FeishuVCExportOperator", "FeishuVCCreateExportOperator",
                                   "FeishuVCDownloadExportOperator", "FeishuVCExportSensor", "FeishuVCExportTrigger",
                                   "FeishuVCHook"],
    "airflow_provider_feishu_vc.operators": ["FeishuVCExportOperator", "FeishuVCCreateExportOperator",
                                             "FeishuVCDownloadExportOperator"],
    "airflow_provider_feishu_vc.sensors": ["FeishuVCExportSensor"],
    "airflow_provider_feishu_vc.hooks": ["FeishuVCHook"],
    "airflow_provider_feishu_vc.triggers": ["FeishuVCExportTrigger"],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(SHORT_NAMES))
def test_the_short_import_paths_give_the_classes(package: str) -> None:
    names = ", ".join(SHORT_NAMES[package])
    probe = f"from {package} import {names}; print([c.__module__ for c in ({names},)])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(module.startswith("airflow_provider_feishu_vc.") for module in eval(done.stdout))


def test_importing_the_package_loads_none_of_its_operators() -> None:
    probe = "import sys, airflow_provider_feishu_vc as p; print(p.__version__, sorted(m for m in sys.modules if m.startswith('airflow_provider_feishu_vc')))"  # noqa: E501
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "1.0.0"
    assert "operators" not in done.stdout and "hooks" not in done.stdout, done.stdout


async def test_a_connection_the_trigger_cannot_see_says_why_and_the_two_ways_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_FEISHU_VC_NOWHERE", raising=False)
    with pytest.raises(FeishuVCConfigError) as raised:
        await FeishuVCHook("feishu_vc_nowhere").aget_config()
    message = str(raised.value)
    assert message.startswith("feishu_vc_conn_id: connection 'feishu_vc_nowhere' is not visible to the trigger")
    assert "AIRFLOW_CONN_FEISHU_VC_NOWHERE=" in message and "deferrable=False" in message


def test_an_empty_data_interval_names_where_to_import_the_timetable_from() -> None:
    day = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    operator = FeishuVCCreateExportOperator(task_id="create", export_type="meeting_list")
    with pytest.raises(Exception, match="data interval is empty") as raised:
        operator.execute({"data_interval_start": day, "data_interval_end": day})  # type: ignore[arg-type]
    for where in ("airflow.sdk", "airflow.timetables.interval", "airflow_provider_feishu_vc.compat"):
        assert where in str(raised.value)


def test_a_range_that_ends_before_it_starts_shows_the_times_as_iso() -> None:
    shown = "(2026-11-23T16:00:00Z) must be after start_time (2026-11-24T16:00:00Z)"
    with pytest.raises(Exception, match=re.escape(shown)):  # as the operator is built: when its DAG file is parsed
        FeishuVCCreateExportOperator(
            task_id="create",
            export_type="meeting_list",
            start_time="2026-11-25T00:00:00+08:00",
            end_time="2026-11-24T00:00:00+08:00",
        )


def test_the_emulators_help_shows_its_defaults_and_how_to_point_a_connection_at_it() -> None:
    done = subprocess.run([sys.executable, "-m", "airflow_provider_feishu_vc.testing.emulator", "--help"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    shown = re.sub(r"\s+", " ", done.stdout)
    assert done.returncode == 0 and "(default: cli_emulator)" in shown and "(default: emulator-secret)" in shown
    assert "AIRFLOW_CONN_FEISHU_VC_DEFAULT=" in shown and '"conn_type": "feishu_vc"' in shown
