"""A DAG test against the local Feishu VC emulator: no account, no network, a real DAG run."""

# [START testing_test]
from __future__ import annotations

import importlib.util
from pathlib import Path

import pendulum


def load_dag(name: str):  # a DAG must come from a file in the dags folder: dag.test() runs it from there
    path = Path(__file__).parent / "dags" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_yesterdays_meetings_land_once(feishu_vc_emulator, feishu_vc_connection, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())  # where files land
    feishu_vc_emulator.configure(export_delay=1)  # Feishu takes a second to build the file

    run = load_dag("daily_meetings").test(logical_date=pendulum.datetime(2026, 11, 24, tz="Asia/Shanghai"))

    assert run.state == "success"
    [export_task_id] = feishu_vc_emulator.export_ids()  # one export, not a retry's second one
    [landed] = list(tmp_path.rglob("*.xlsx"))
    assert landed.name.endswith(f"_{export_task_id}.xlsx")


# [END testing_test]
