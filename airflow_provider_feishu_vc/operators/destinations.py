"""Where an export's file lands, as the download and export operators take it: the destination options, the
default storage base, the asset event, the landed file kept for a retry, and the OpenLineage datasets."""

from __future__ import annotations

import os
from logging import Logger
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.compat import conf, task_state
from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path
from airflow_provider_feishu_vc.operators.tries import LANDED_KEY, fail_on_bad_input, remember

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook


def default_storage_base() -> str:
    """``[feishu_vc] storage_base``, or a ``feishu_vc_exports`` folder under AIRFLOW_HOME."""
    base = conf.get("feishu_vc", "storage_base", fallback="") or ""
    if base:
        return base.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or conf.get("core", "airflow_home", fallback="") or "~/airflow"
    return "file://" + os.path.abspath(os.path.expanduser(home)) + "/feishu_vc_exports"


def lineage_name(path: ObjectStoragePath) -> tuple[str, str]:
    """(namespace, name) of a stored file as OpenLineage names datasets: ``s3://bucket`` + key, ``file`` + path."""
    protocol = path.protocol or "file"
    if protocol in ("file", "local"):
        return "file", path.path
    bucket, _, key = path.path.lstrip("/").partition("/")
    return f"{protocol}://{bucket}", key


class LandsExportFiles:
    """Where and how an export's file lands: the download operator's and the one-task operator's destination
    options, the asset event, and the landed file remembered for later tries."""

    destination: str | ObjectStoragePath | None
    storage_conn_id: str | None
    overwrite: bool
    into_folder: bool | None
    outlets: list[Any]
    dag_id: str
    task_id: str
    log: Logger

    def take_destination(
        self,
        destination: str | ObjectStoragePath | None,
        storage_conn_id: str | None,
        overwrite: bool,
        into_folder: bool | None,
    ) -> None:
        """Keep the destination options, and make the task's asset its outlet unless it was given others."""
        self.destination = destination
        self.storage_conn_id = storage_conn_id
        self.overwrite = overwrite
        self.into_folder = into_folder
        if not self.outlets:
            self.outlets = [self.export_asset(self.dag_id if self.has_dag() else "", self.task_id)]

    @staticmethod
    def export_asset(dag_id: str, task_id: str) -> Asset:
        """The asset a download task updates: one per DAG and task, whatever the file's path."""
        return Asset(name=f"feishu_vc_export.{dag_id}.{task_id}", uri=f"feishu-vc://exports/{dag_id}/{task_id}")

    def _target(self, context: Context) -> tuple[ObjectStoragePath, bool | None]:
        """Where to write, and whether that is a folder (None: let the hook look)."""
        destination = self.destination
        if destination is None:
            destination = f"{default_storage_base()}/{self.dag_id}/{context['run_id']}/"
        into_folder = self.into_folder
        if into_folder is None and isinstance(destination, str) and destination.endswith("/"):
            into_folder = True
        return as_storage_path(destination, conn_id=self.storage_conn_id), into_folder

    def land(self, context: Context, hook: FeishuVCHook, file_token: str, export_task_id: str | None) -> str:
        """Download the file into the destination; announce it on the asset; return its URI."""
        target, into_folder = self._target(context)
        fallback = f"{export_task_id}.xlsx" if export_task_id else "feishu_vc_export.xlsx"
        try:
            landed = hook.download_export(
                file_token, target, into_folder=into_folder, overwrite=self.overwrite, fallback_name=fallback
            )
        except FeishuVCConfigError as error:
            fail_on_bad_input(error)
        uri = str(landed)
        remember(context, LANDED_KEY, {"export_task_id": export_task_id, "uri": uri})
        self.log.info("Feishu export file is at %s", uri)
        self._lineage = (hook.config.base_url, export_task_id, landed)
        return self.announce(context, uri, export_task_id)

    def landed_earlier(self, context: Context, export_task_id: str) -> str | None:
        """The URI of this export's file when an earlier try already landed it and it is still there."""
        state = task_state(context)
        landed = state.get(LANDED_KEY) if state is not None else None
        if not isinstance(landed, dict) or landed.get("export_task_id") != export_task_id:
            return None
        uri = str(landed.get("uri") or "")
        if not uri or not as_storage_path(uri, conn_id=self.storage_conn_id).exists():
            return None
        self.log.info("The file of export %s was landed by an earlier try at %s", export_task_id, uri)
        return uri

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Feishu export as input, the landed file (never a temporary name) as output."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        lineage = getattr(self, "_lineage", None)
        if lineage is None:  # the file was landed by an earlier try, or nothing landed
            return OperatorLineage()
        api_origin, export_task_id, landed = lineage
        inputs = (
            [Dataset(namespace=api_origin, name=f"open-apis/vc/v1/exports/{export_task_id}")] if export_task_id else []
        )
        return OperatorLineage(inputs=inputs, outputs=[Dataset(*lineage_name(landed))])

    def announce(self, context: Context, uri: str, export_task_id: str | None) -> str:
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = {"uri": uri, "export_task_id": export_task_id}
        return uri
