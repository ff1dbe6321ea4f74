"""Where an export's file lands, as the download and export operators take it: the destination options, the
default storage base (a folder per task instance), the asset event, and the OpenLineage datasets."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.client.exports import get_export_kind
from airflow_provider_feishu_vc.compat import conf
from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path
from airflow_provider_feishu_vc.operators.tries import (
    abort_left_upload,
    fail_on_bad_input,
    forget_landing,
    landed_by_earlier_try,
    landing_request,
    landing_witness,
    upload_journal,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context, ObjectStoragePath

    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

    OperatorBase = BaseOperator
else:
    OperatorBase = object  # a mixin of operators: it has their attributes when mixed in

#: What the download and export operators can land: the export's xlsx as Feishu made it, or a typed table.
OUTPUT_FORMATS = ("xlsx", "parquet", "csv")
#: What a download task returns: the file's URI, or for a typed table its URI, format, rows and schema fingerprint.
Landed = str | dict[str, Any]


def default_storage_base() -> str:
    """``[feishu_vc] storage_base``, or a ``feishu_vc_exports`` folder under AIRFLOW_HOME."""
    base = conf.get("feishu_vc", "storage_base", fallback="") or ""
    if base:
        return base.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or conf.get("core", "airflow_home", fallback="") or "~/airflow"
    return "file://" + os.path.abspath(os.path.expanduser(home)) + "/feishu_vc_exports"


def task_instance_folder(context: Context, dag_id: str, task_id: str) -> str:
    """The default folder of one task instance's file: ``<dag_id>/<run_id>/<task_id>[/<map_index>]``, so that no two
    task instances (mapped ones included) ever write to the same path."""
    folder = f"{dag_id}/{context['run_id']}/{task_id}"
    map_index = getattr(context.get("ti"), "map_index", -1)
    return folder if map_index is None or map_index < 0 else f"{folder}/{map_index}"


def lineage_name(path: ObjectStoragePath) -> tuple[str, str]:
    """(namespace, name) of a stored file as OpenLineage names datasets: ``s3://bucket`` + key, ``file`` + path."""
    protocol = path.protocol or "file"
    if protocol in ("file", "local"):
        return "file", path.path
    bucket, _, key = path.path.lstrip("/").partition("/")
    return f"{protocol}://{bucket}", key


def check_destination(target: ObjectStoragePath, into_folder: bool | None, overwrite: bool) -> None:
    """Refuse, before an export is spent on it, a destination the file could not land at: a
    ``FeishuVCConfigError`` naming ``destination`` and what is allowed.

    Everywhere: a file target must not be taken (without ``overwrite``) nor be a folder (``into_folder=False``).
    A local disk: the folder, or the nearest folder above it that exists, must be a folder (not a regular file)
    the worker can create files in, tried with a hidden probe file removed at once (permission bits do not tell,
    e.g. for root or a read-only mount). An object store: the bucket must exist (a bucket this connection may not
    look at passes: writing may still be allowed); no probe object is written. Other stores: no folder on the way
    may be a regular file. The landing checks again (the store may change meanwhile) and lands whole or not at all.
    """
    from airflow_provider_feishu_vc.hooks.landing import already_exists, is_local, is_object_store

    is_folder = target.is_dir() if into_folder is None else into_folder
    if not is_folder:
        if into_folder is False and target.is_dir():
            raise FeishuVCConfigError(
                "destination", f"{target} is a folder; name a file, or pass into_folder=True to land inside it"
            )
        if not overwrite and target.exists():
            raise already_exists(target)
    folder = target if is_folder else target.parent
    if is_object_store(target):
        _check_bucket(target)
    elif is_local(target):
        _check_local_folder(target, folder.path)
    else:
        _check_folders_on_the_way(target, folder)


def _check_bucket(target: ObjectStoragePath) -> None:
    bucket = target.path.lstrip("/").split("/", 1)[0]
    try:
        target.fs.info(bucket)
    except FileNotFoundError:
        raise FeishuVCConfigError(
            "destination", f"{target}: bucket {bucket!r} does not exist; create it, or choose an existing bucket"
        ) from None
    except OSError:  # e.g. no s3:ListBucket: the writer may still put objects; the landing will tell
        return


def _check_local_folder(target: ObjectStoragePath, folder: str) -> None:
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise FeishuVCConfigError(
            "destination",
            f"{target}: {existing} is a regular file, not a folder; choose a path whose folders are folders or can "
            "be created",
        )
    try:
        probe, probe_path = tempfile.mkstemp(prefix=".feishu-vc-probe-", dir=existing)
    except OSError as error:
        what = "is a folder this worker cannot create files in" if existing == folder else (
            f"cannot be created: {existing} is a folder this worker cannot create folders in"
        )  # fmt: skip
        raise FeishuVCConfigError(
            "destination",
            f"{target}: {folder} {what} ({error.strerror or error}); choose a folder the worker may write to",
        ) from None
    os.close(probe)
    with contextlib.suppress(OSError):
        os.unlink(probe_path)


def _check_folders_on_the_way(target: ObjectStoragePath, folder: ObjectStoragePath) -> None:
    for step in (folder, *folder.parents):
        if step.is_dir():
            return
        if step.is_file():
            raise FeishuVCConfigError(
                "destination",
                f"{target}: {step} is a regular file, not a folder; choose a path whose folders are folders or "
                "can be created",
            )


class LandsExportFiles(OperatorBase):
    """Where and how an export's file lands: the download operator's and the one-task operator's destination
    options, the asset event, and the landed file remembered for later tries."""

    destination: str | ObjectStoragePath | None
    storage_conn_id: str | None
    overwrite: bool
    into_folder: bool | None
    output_format: str
    table_timezone: str
    table_schema: str

    def take_destination(
        self,
        destination: str | ObjectStoragePath | None,
        storage_conn_id: str | None,
        overwrite: bool,
        into_folder: bool | None,
        output_format: str = "xlsx",
        table_timezone: str = "Asia/Shanghai",
        table_schema: str = "evolve",
    ) -> None:
        """Keep the destination options, and make the task's asset its outlet unless it was given others."""
        task = f"(task {self.task_id!r})"
        if output_format not in OUTPUT_FORMATS:
            raise FeishuVCConfigError(
                "output_format", f"is {output_format!r}; allowed: {', '.join(OUTPUT_FORMATS)} {task}"
            )
        if table_schema not in ("evolve", "freeze"):
            raise FeishuVCConfigError("table_schema", f"is {table_schema!r}; allowed: evolve, freeze {task}")
        self.destination = destination
        self.storage_conn_id = storage_conn_id
        self.overwrite = overwrite
        self.into_folder = into_folder
        self.output_format = output_format
        self.table_timezone = table_timezone
        self.table_schema = table_schema
        if not self.outlets:
            in_dag = self.has_dag()  # type: ignore[no-untyped-call,unused-ignore]  # not annotated in Airflow
            self.outlets = [self.export_asset(self.dag_id if in_dag else "", self.task_id)]

    @staticmethod
    def export_asset(dag_id: str, task_id: str) -> Asset:
        """The asset a download task updates: one per DAG and task, whatever the file's path."""
        return Asset(name=f"feishu_vc_export.{dag_id}.{task_id}", uri=f"feishu-vc://exports/{dag_id}/{task_id}")

    def _target(self, context: Context) -> tuple[ObjectStoragePath, bool | None]:
        """Where to write, and whether that is a folder (None: let the hook look)."""
        destination = self.destination
        if destination is None:
            destination = f"{default_storage_base()}/{task_instance_folder(context, self.dag_id, self.task_id)}/"
        into_folder = self.into_folder
        if into_folder is None and isinstance(destination, str) and destination.endswith("/"):
            into_folder = True
        return as_storage_path(destination, conn_id=self.storage_conn_id), into_folder

    def check_destination(self, context: Context) -> None:
        """Refuse a destination the file could not land at, before anything is spent on it (see
        :func:`check_destination`); bad input fails the task at once."""
        target, into_folder = self._target(context)
        try:
            check_destination(target, into_folder, self.overwrite)
        except FeishuVCConfigError as error:
            fail_on_bad_input(error)

    def destination_parts(self, context: Context) -> dict[str, Any]:
        """Where this task's file goes, resolved: part of what tells one export request from another."""
        target, into_folder = self._target(context)
        return {
            "destination": str(target),
            "into_folder": into_folder,
            "storage_conn_id": self.storage_conn_id,
            "overwrite": self.overwrite,
            "output_format": self.output_format,
            "table_timezone": self.table_timezone,
            "table_schema": self.table_schema,
        }

    def land(
        self,
        context: Context,
        hook: FeishuVCHook,
        file_token: str,
        export_task_id: str | None,
        export_type: str | None = None,
    ) -> Landed:
        """Download the file into the destination (as a typed table for ``parquet`` / ``csv``); announce it on the
        asset; return what the task returns: the file's URI, or for a table ``{"uri", "format", "rows",
        "schema_fingerprint"}``."""
        target, into_folder = self._target(context)
        fallback = f"{export_task_id}.xlsx" if export_task_id else "feishu_vc_export.xlsx"
        abort_left_upload(context, self.storage_conn_id, self.log)
        request = landing_request(file_token, export_task_id, export_type, self.destination_parts(context))
        earlier = landed_by_earlier_try(context, request, self.storage_conn_id, self.log)
        if earlier is not None:
            self.log.info(
                "The file of export %s was landed by an earlier try at %s", export_task_id, landed_uri(earlier)
            )
            return self.announce(context, earlier, export_task_id)
        options: dict[str, Any] = {"into_folder": into_folder, "overwrite": self.overwrite, "fallback_name": fallback,
                                   "upload_journal": upload_journal(context),
                                   "landing_witness": landing_witness(context, request)}  # fmt: skip
        try:
            check_destination(target, into_folder, self.overwrite)  # again: the store may have changed meanwhile
            if self.output_format == "xlsx":
                landed_file = hook.download_export(file_token, target, **options)
                result: Landed = str(landed_file)
                schema = None
            else:
                if not export_type:
                    raise FeishuVCConfigError(
                        "export_type",
                        f"is needed to read the file as a typed table (output_format={self.output_format!r})",
                    )
                get_export_kind(export_type)  # as rendered: checked before the download
                table = hook.download_table(
                    file_token, target, export_type, self.output_format,
                    timezone=self.table_timezone, schema=self.table_schema, **options,
                )  # fmt: skip
                landed_file, schema = table.path, table.schema
                result = {"uri": str(table.path), "format": table.output_format, "rows": table.rows,
                          "schema_fingerprint": table.fingerprint}  # fmt: skip
        except FeishuVCConfigError as error:
            fail_on_bad_input(error)
        except (PermissionError, NotADirectoryError, IsADirectoryError) as error:  # the store refused after the check
            fail_on_bad_input(
                FeishuVCConfigError(
                    "destination", f"{target} refused the file ({error}); choose a place the worker may write to"
                )
            )
        self.log.info("Feishu export file is at %s", landed_uri(result))
        self._lineage = (hook.config.base_url, export_task_id, landed_file, schema)
        return self.announce(context, result, export_task_id)

    def post_execute(self, context: Context, result: Any = None) -> None:
        """The task succeeded: drop the file it kept for later tries (and what the operators below keep)."""
        forget_landing(context)
        super().post_execute(context, result)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Feishu export as input, the landed file (never a temporary name) as output, with a
        schema facet for a typed table."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        lineage = getattr(self, "_lineage", None)
        if lineage is None:  # the file was landed by an earlier try, or nothing landed
            return OperatorLineage()
        api_origin, export_task_id, landed, schema = lineage
        inputs = (
            [Dataset(namespace=api_origin, name=f"open-apis/vc/v1/exports/{export_task_id}")] if export_task_id else []
        )
        facets = {"schema": schema_facet(schema)} if schema is not None else {}
        return OperatorLineage(inputs=inputs, outputs=[Dataset(*lineage_name(landed), facets=facets)])

    def announce(self, context: Context, result: Landed, export_task_id: str | None) -> Landed:
        extra: dict[str, Any] = {"uri": landed_uri(result), "export_task_id": export_task_id}
        if isinstance(result, dict):
            extra.update(format=result["format"], rows=result["rows"], schema_fingerprint=result["schema_fingerprint"])
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra
        return result


def landed_uri(result: Landed) -> str:
    return str(result["uri"]) if isinstance(result, dict) else str(result)


def schema_facet(schema: Any) -> Any:
    """OpenLineage's schema facet for an Arrow schema: every column with its type."""
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    return SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=field.name, type=str(field.type)) for field in schema]
    )
