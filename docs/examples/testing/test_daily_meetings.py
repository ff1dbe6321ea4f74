"""A DAG test against the local Feishu VC emulator: no account, no network, a real DAG run."""

# [START testing_test]
from __future__ import annotations

from pathlib import Path

import pendulum

try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2+
except ImportError:
    from airflow.models.dagbag import DagBag  # Airflow 3.1


def load_dag(dag_id: str, file_name: str):
    """The DAG from its file in the dags folder (dag.test() runs it from there), however the file names it:
    `with DAG(...):` needs no `as dag`."""
    bag = DagBag(dag_folder=Path(__file__).parent / "dags" / file_name)
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def test_yesterdays_meetings_land_once(feishu_vc_emulator, feishu_vc_connection, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())  # where files land
    feishu_vc_emulator.configure(export_delay=1)  # Feishu takes a second to build the file

    dag = load_dag("daily_meetings", "daily_meetings.py")
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 24, tz="Asia/Shanghai"))

    assert run.state == "success"
    [export_task_id] = feishu_vc_emulator.export_ids()  # one export, not a retry's second one
    [landed] = list(tmp_path.rglob("*.xlsx"))
    assert landed.name.endswith(f"_{export_task_id}.xlsx")


# [END testing_test]
