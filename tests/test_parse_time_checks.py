"""Every literal argument of the export operators is checked when the DAG file is parsed (a mistake is an import
error naming the field and the task, not a failure of the first scheduled run); a templated one is checked when
rendered, before anything is sent to Feishu."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.compat import AirflowFailException
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCCreateExportOperator, FeishuVCExportOperator
from airflow_provider_feishu_vc.testing import FeishuVCEmulator

DAY = 'start_time="2026-11-23T00:00:00+08:00", end_time="2026-11-24T00:00:00+08:00"'
PARTICIPANTS = 'meeting_start_time="2026-11-23T10:00:00+08:00", meeting_end_time="2026-11-23T11:00:00+08:00"'
QUALITY = f'meeting_no="123456789", join_time="2026-11-23T10:05:00+08:00", {PARTICIPANTS}'

#: (operator, its arguments as written in a DAG file, what the import error says)
MISTAKES = {
    "unknown export_type": ("FeishuVCExportOperator", 'export_type="meetings"',
                            "export_type: is 'meetings'; allowed: meeting_list"),
    "meeting_status out of range": ("FeishuVCExportOperator", 'export_type="meeting_list", meeting_status=9',
                                    "meeting_status: is 9; allowed: 1, 2, 3"),
    "required field missing": ("FeishuVCExportOperator", f'export_type="participant_list", {PARTICIPANTS}',
                               "meeting_no: is required for participant_list"),
    "required time missing": ("FeishuVCCreateExportOperator", 'export_type="participant_list", meeting_no="123456789"',
                              "meeting_start_time: is required for participant_list"),
    "literal time unreadable": ("FeishuVCExportOperator", 'export_type="meeting_list", start_time="2026-13-01"',
                                "start_time: is '2026-13-01'; must be a datetime"),
    "time in milliseconds": ("FeishuVCCreateExportOperator", 'export_type="meeting_list", end_time=1795406400000',
                             "end_time: is 1795406400000; must be a time between 2000-01-01 and 2100-01-01"),
    "range backwards": ("FeishuVCExportOperator",
                        'export_type="meeting_list", start_time="2026-11-24", end_time="2026-11-23"',
                        "end_time: .* must be after start_time"),
    "fields that exclude each other": ("FeishuVCExportOperator",
                                       f'export_type="meeting_list", meeting_no="123456789", room_id="omm_1", {DAY}',
                                       "room_id: cannot be combined with meeting_no"),
    "neither user nor room": ("FeishuVCExportOperator", f'export_type="participant_quality_list", {QUALITY}',
                              "user_id / room_id: participant_quality_list needs exactly one of them, got 0"),
    "field of another kind": ("FeishuVCExportOperator", f'export_type="meeting_list", room_level_id="omb_1", {DAY}',
                              "room_level_id: is not a field of meeting_list"),
    "user_id_type": ("FeishuVCExportOperator", f'export_type="meeting_list", user_id_type="email", {DAY}',
                     "user_id_type: is 'email'; allowed: open_id"),
    "output_format": ("FeishuVCExportOperator", f'export_type="meeting_list", output_format="xlsv", {DAY}',
                      "output_format: is 'xlsv'; allowed: xlsx, parquet, csv"),
    "download: table without export_type": ("FeishuVCDownloadExportOperator",
                                            'file_token="boxcn1", output_format="parquet"',
                                            "export_type: is needed to read the file as a typed table"),
    "download: unknown export_type": ("FeishuVCDownloadExportOperator",
                                      'file_token="boxcn1", export_type="meeting", output_format="csv"',
                                      "export_type: is 'meeting'; allowed: meeting_list"),
    "download: empty file_token": ("FeishuVCDownloadExportOperator", 'file_token=""',
                                   "file_token: is ''; it must be the non-empty file_token of a done export"),
}  # fmt: skip

#: Arguments known only at run time: templates, XComs, the data interval's default range. They parse cleanly.
DEFERRED = {
    "templated export_type": ('export_type="{{ params.kind }}", meeting_status=9', ""),
    "templated times": ('export_type="participant_list", meeting_no="123456789", meeting_start_time='
                        '"{{ data_interval_start }}", meeting_end_time="{{ data_interval_end }}"', ""),
    "an XCom for the required field": (f'export_type="participant_list", {PARTICIPANTS}',
                                       ", meeting_no=previous.output"),
    "range from the data interval": ('export_type="meeting_list", meeting_status=2', ""),
    "templated side of exactly one": ('export_type="participant_quality_list", user_id="{{ params.who }}", '
                                      + QUALITY, ""),
}  # fmt: skip


def dag_file(dag_id: str, task: str) -> str:
    return (
        textwrap.dedent(
            """
        import pendulum
        from airflow.sdk import DAG
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow_provider_feishu_vc.operators import (
            FeishuVCCreateExportOperator, FeishuVCDownloadExportOperator, FeishuVCExportOperator,
        )

        with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 11, 1)) as dag:
            previous = EmptyOperator(task_id="previous")
            {task}
        """
        )
        .replace("{task}", task)
        .replace("{dag_id}", dag_id)
    )


def parse(folder: Path, files: dict[str, str]) -> dict[str, str]:
    """Parse DAG files as Airflow's DAG processor does; return each file's import error (empty when it loaded)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    bag = DagBag(dag_folder=str(folder))
    return {name: bag.import_errors.get(str(folder / f"{name}.py"), "") for name in files}


def test_each_literal_mistake_fails_the_dag_file_when_it_is_parsed(tmp_path: Path) -> None:
    names = {case: f"case_{number}" for number, case in enumerate(MISTAKES)}
    files = {
        names[case]: dag_file(names[case], f'{operator}(task_id="export", {arguments})')
        for case, (operator, arguments, _) in MISTAKES.items()
    }
    errors = parse(tmp_path / "dags", files)
    for case, (_, _, message) in MISTAKES.items():
        error = errors[names[case]]
        assert "FeishuVCConfigError" in error and "(task 'export')" in error, f"{case}: {error or 'parsed cleanly'}"
        assert re.search(message, error), f"{case}: {error}"


def test_arguments_known_only_at_run_time_parse_cleanly(tmp_path: Path) -> None:
    files = {
        f"case_{number}": dag_file(f"case_{number}", f'FeishuVCExportOperator(task_id="export", {arguments}{more})')
        for number, (arguments, more) in enumerate(DEFERRED.values())
    }
    errors = parse(tmp_path / "dags", files)
    assert {case: errors[f"case_{number}"] for number, case in enumerate(DEFERRED)} == dict.fromkeys(DEFERRED, "")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"export_type": "{{ 'meeting' ~ 's' }}"}, "export_type: is 'meetings'; allowed: meeting_list"),
        ({"meeting_status": "{{ 4 + 5 }}"}, "meeting_status: is 9; allowed: 1, 2, 3"),
        ({"start_time": "{{ '2026-13-01' }}"}, "start_time: is '2026-13-01'"),
    ],
)
def test_a_templated_mistake_fails_when_rendered_before_anything_is_sent(
    emulator: FeishuVCEmulator, connection_env: str, options: dict[str, str], message: str
) -> None:
    for operator_class in (FeishuVCCreateExportOperator, FeishuVCExportOperator):
        arguments = {"export_type": "meeting_list", "start_time": "2026-11-23", "end_time": "2026-11-24", **options}
        operator = operator_class(task_id="export", **arguments)  # parses cleanly
        operator.render_template_fields({})  # type: ignore[arg-type]
        with pytest.raises(AirflowFailException, match=message):
            operator.execute({"run_id": "manual__1"})  # type: ignore[arg-type]
    assert emulator.count() == 0  # nothing was sent, not even a token request
