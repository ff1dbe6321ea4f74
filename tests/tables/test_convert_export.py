"""``convert_export`` lands whole or not at all, like the operators: a table that fails part-way leaves nothing at
its destination (no well-formed, truncated Parquet or CSV), an older file there stays as it was, and a local or
any ``ObjectStoragePath`` destination gets the finished table only."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCTableError
from airflow_provider_feishu_vc.tables import convert_export, read_export
from airflow_provider_feishu_vc.testing.emulator.workbook import write_stored_workbook
from tests.conftest import S3_CONN_ID
from tests.s3 import S3Server

#: More rows than the sheet reader types and writes at once (65,536), so that a bad last cell comes after the
#: first chunk is already written.
ROWS = 70_000


@pytest.fixture(scope="module")
def bad_last_cell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("convert") / "bad.xlsx"
    rows = ([str(n), str(n % 9)] for n in range(ROWS - 1))
    write_stored_workbook(path, "s", ["会议ID", "参会人数量"], [*rows, ["last", "many"]], ROWS)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("convert") / "good.xlsx"
    write_stored_workbook(path, "s", ["会议ID", "参会人数量"], [["7", "3"], ["8", "4"]], 2)
    return path


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_a_table_that_fails_part_way_leaves_nothing_at_its_destination(
    bad_last_cell: Path, tmp_path: Path, output_format: str
) -> None:
    destination = tmp_path / f"table.{output_format}"
    with pytest.raises(FeishuVCTableError, match=rf"sheet row {ROWS + 1} .*'many'"):
        convert_export(bad_last_cell, "meeting_list", str(destination), output_format)
    assert list(tmp_path.iterdir()) == []  # neither the table nor a temporary file


def test_a_failed_table_leaves_an_older_file_at_the_destination_as_it_was(bad_last_cell: Path, tmp_path: Path) -> None:
    destination = tmp_path / "table.parquet"
    destination.write_bytes(b"yesterday's table")
    with pytest.raises(FeishuVCTableError, match="'many'"):
        convert_export(bad_last_cell, "meeting_list", destination, "parquet")
    assert destination.read_bytes() == b"yesterday's table" and list(tmp_path.iterdir()) == [destination]


def test_a_failed_table_leaves_nothing_in_an_object_store(bad_last_cell: Path, tmp_path: Path) -> None:
    folder = ObjectStoragePath(f"memory://convert-export/{tmp_path.name}/")
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.raises(FeishuVCTableError, match="'many'"):
        convert_export(bad_last_cell, "meeting_list", folder / "table.parquet", "parquet")
    assert list(folder.iterdir()) == []


def test_a_finished_table_lands_at_a_local_or_object_storage_destination(good: Path, tmp_path: Path) -> None:
    expected = read_export(good, "meeting_list")
    memory = ObjectStoragePath(f"memory://convert-export/{tmp_path.name}/out/table.parquet")
    for destination in (str(tmp_path / "a.parquet"), tmp_path / "sub" / "b.parquet",
                        ObjectStoragePath((tmp_path / "c.parquet").as_uri()), memory):  # fmt: skip
        rows, schema = convert_export(good, "meeting_list", destination, "parquet")
        assert rows == 2 and schema == expected.schema
        with destination.open("rb") if isinstance(destination, ObjectStoragePath) else open(destination, "rb") as f:
            assert pq.read_table(f).equals(expected)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.parquet", "b.parquet", "c.parquet", "sub"]
    rows, _ = convert_export(good, "meeting_list", str(tmp_path / "a.parquet"), "csv")  # an older file is replaced
    assert rows == 2 and (tmp_path / "a.parquet").read_bytes().startswith(b'"meeting_id",')


def test_a_bad_output_format_is_refused_by_name_before_anything_is_written(good: Path, tmp_path: Path) -> None:
    with pytest.raises(FeishuVCConfigError, match="output_format: is 'xlsx'"):
        convert_export(good, "meeting_list", str(tmp_path / "t.xlsx"), "xlsx")
    assert list(tmp_path.iterdir()) == []


def test_into_s3_a_finished_table_lands_once_and_a_failed_one_leaves_no_key_and_no_pending_upload(
    good: Path, bad_last_cell: Path, s3_server: S3Server, bucket: str
) -> None:
    folder = ObjectStoragePath(f"s3://{S3_CONN_ID}@{bucket}/tables/")
    rows, _ = convert_export(good, "meeting_list", folder / "good.parquet", "parquet")
    with pytest.raises(FeishuVCTableError, match="'many'"):
        convert_export(bad_last_cell, "meeting_list", folder / "bad.parquet", "parquet")
    assert rows == 2 and s3_server.keys(bucket) == ["tables/good.parquet"]
    assert pq.read_table(io.BytesIO(s3_server.read(bucket, "tables/good.parquet"))).num_rows == 2
    assert s3_server.pending_uploads(bucket) == []
