"""The Airflow face of the Feishu VC client: connection -> credentials -> client."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.client.files import safe_filename
from airflow_provider_feishu_vc.compat import amask_secret, form_widgets, mask_secret
from airflow_provider_feishu_vc.get_provider_info import CONNECTION_FIELDS, UI_FIELD_BEHAVIOUR
from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore

if TYPE_CHECKING:
    from airflow.sdk import Connection, ObjectStoragePath

    from airflow_provider_feishu_vc.client.api import ExportTask
    from airflow_provider_feishu_vc.client.async_client import AsyncFeishuVCClient
    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
    from airflow_provider_feishu_vc.hooks.landing import LandingWitness, UploadJournal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandedTable:
    """A typed table that landed: where, in which format, how many rows, and its schema (and the schema's
    fingerprint)."""

    path: ObjectStoragePath
    output_format: str
    rows: int
    fingerprint: str
    schema: Any = field(repr=False)


def form_label(field: str) -> str:
    """What the connection form calls ``field`` ("host", "login (App ID)", "extra.timeout", ...)."""
    name = field.split(" ", 1)[0]
    relabeled: dict[str, str] = UI_FIELD_BEHAVIOUR["relabeling"]
    if name in relabeled:
        return relabeled[name]
    if name.startswith("extra.") and name.removeprefix("extra.") in CONNECTION_FIELDS:
        return str(CONNECTION_FIELDS[name.removeprefix("extra.")]["label"])
    return name.capitalize()


def config_from_connection(conn: Connection) -> ClientConfig:
    """Validate an Airflow connection into client settings; errors name the connection field."""
    try:
        return ClientConfig.from_connection_parts(
            host=conn.host, login=conn.login, password=conn.password, port=conn.port, extra=conn.extra
        )
    except FeishuVCConfigError as error:
        raise FeishuVCConfigError(f"connection {conn.conn_id!r} {error.field}", error.problem) from None


def as_storage_path(
    destination: str | os.PathLike[str] | ObjectStoragePath, conn_id: str | None = None
) -> ObjectStoragePath:
    """An ObjectStoragePath for a URI, a local path (made absolute) or an ObjectStoragePath (kept as it is); a
    destination no store takes is a ``FeishuVCConfigError`` naming ``destination``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        return destination
    try:
        text = os.fspath(destination)
    except TypeError:
        raise FeishuVCConfigError(
            "destination", f"must be a path, a URI or an ObjectStoragePath, not {destination!r}"
        ) from None
    if not text.strip() or "\x00" in text:
        raise FeishuVCConfigError("destination", f"is {text!r}: give a path or a URI such as s3://bucket/prefix/")
    if "://" not in text:
        text = "file://" + os.path.abspath(text)
    try:
        # No conn_id=None: on Airflow 3.1 it would override the one a URI names (s3://conn_id@bucket/key).
        path = ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)
        path.fs  # noqa: B018  (the store is looked up here, so that an unknown one is named now)
    except (ValueError, ImportError, TypeError, KeyError, AttributeError) as error:
        raise FeishuVCConfigError(
            "destination", f"{text!r} names no store this deployment can write to ({type(error).__name__}: {error})"
        ) from None
    return path


class LoopConfigCache:
    """Connection settings per event loop and connection id, kept ``ttl`` seconds: a thousand triggers starting
    together cost one connection lookup, not a thousand. A failed lookup is not kept."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[ClientConfig]]]
        ] = weakref.WeakKeyDictionary()

    async def get(self, conn_id: str, load: Callable[[], Awaitable[ClientConfig]]) -> ClientConfig:
        entries = self._loops.setdefault(asyncio.get_running_loop(), {})
        entry = entries.get(conn_id)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            entry = entries[conn_id] = (time.monotonic(), asyncio.ensure_future(load()))
        try:
            return await asyncio.shield(entry[1])
        except Exception:
            if entries.get(conn_id) is entry:
                del entries[conn_id]
            raise


LOOP_CONFIGS = LoopConfigCache()


class FeishuVCHook(BaseHook):
    """Interact with Feishu / Lark video-conference exports.

    Tokens are fetched once per app and process, cached, renewed before expiry and replaced when Feishu
    rejects them; the App Secret and every token are registered with Airflow's secret masker.

    :param feishu_vc_conn_id: The ``feishu_vc`` connection: host = API origin (default
        ``https://open.feishu.cn``, or ``lark``), login = App ID, password = App Secret.
    """

    conn_name_attr = "feishu_vc_conn_id"
    default_conn_name = "feishu_vc_default"
    conn_type = "feishu_vc"
    hook_name = "Feishu VC"

    def __init__(self, feishu_vc_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self._config: ClientConfig | None = None
        self._client: FeishuVCClient | None = None

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras of the connection form, for Airflow 3.1 (later releases read ``conn-fields`` from the
        provider info and never call this)."""
        return form_widgets(CONNECTION_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """For Airflow 3.1 (later releases read ``ui-field-behaviour`` from the provider info)."""
        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    # -- settings and clients --------------------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        """The connection's settings, validated, with its secrets registered with the masker."""
        if self._config is None:
            self._config = self._accepted(
                config_from_connection(self._typed(self.get_connection(self.feishu_vc_conn_id)))
            )
        return self._config

    async def aget_config(self) -> ClientConfig:
        """The settings, looked up without blocking the event loop (for triggers); shared per loop."""
        if self._config is None:
            self._config = await LOOP_CONFIGS.get(self.feishu_vc_conn_id, self._aload_config)
        return self._config

    async def _aload_config(self) -> ClientConfig:
        try:
            connection = await self.aget_connection(self.feishu_vc_conn_id)
        except Exception as error:
            if type(error).__name__ != "AirflowNotFoundException":
                raise
            raise FeishuVCConfigError("feishu_vc_conn_id", self._not_visible_to_triggers()) from None
        config = config_from_connection(self._typed(connection))
        for secret in config.secrets:
            await amask_secret(secret)
        return self._warned(config)

    def _typed(self, connection: Connection) -> Connection:
        """The connection, with a warning when its type is not this provider's (it still works)."""
        if connection.conn_type not in (None, "", self.conn_type):
            # Only a 'generic' connection may have been meant as this one: `--conn-type feishu-vc` is stored so.
            why = " (`--conn-type feishu-vc` is stored as 'generic')" if connection.conn_type == "generic" else ""
            self.log.warning(
                "Connection %r has conn_type %r, not %r: the UI form and `airflow connections test` cannot find "
                "this provider for it%s. Add it again with `airflow connections add %s --conn-type feishu_vc ...` "
                "or a feishu-vc:// URI.",
                connection.conn_id,
                connection.conn_type,
                self.conn_type,
                why,
                connection.conn_id,
            )
        return connection

    def _not_visible_to_triggers(self) -> str:
        conn_id = self.feishu_vc_conn_id
        return (
            f"connection {conn_id!r} is not visible to the trigger. Under `airflow dags test` or dag.test() a deferred "
            "wait runs in line, where only connections from environment variables or a secrets backend are visible, "
            "not ones added with `airflow connections add` or the UI (a deployed triggerer sees those). Either define "
            f'it in the environment (AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "feishu_vc", ...}}\'), or '
            "test the DAG with deferrable=False."
        )

    def _accepted(self, config: ClientConfig) -> ClientConfig:
        """Register the connection's secrets with the masker and warn when TLS checks are off."""
        for secret in config.secrets:
            mask_secret(secret)
        return self._warned(config)

    def _warned(self, config: ClientConfig) -> ClientConfig:
        if not config.verify_ssl:
            self.log.warning(
                "TLS certificate verification is OFF for connection %s (extra verify_ssl=false): "
                "use this only with a private deployment you trust.",
                self.feishu_vc_conn_id,
            )
        return config

    def get_conn(self) -> FeishuVCClient:
        """The blocking client for this connection (one per hook, closed by :meth:`close`; tokens and rate
        budgets are shared process-wide)."""
        if self._client is None:
            from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient

            store = VariableUserTokenStore.for_config(self.config)
            self._client = FeishuVCClient(self.config, on_secret=mask_secret, token_store=store)
        return self._client

    def close(self) -> None:
        """Close the blocking client's connections (a new one is made if the hook is used again)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def async_client(self) -> AbstractAsyncContextManager[AsyncFeishuVCClient]:
        """``async with hook.async_client() as client``: an async client sharing the app's HTTP pool, token and
        rate budget with every other trigger in this process; the pool is closed when the last user leaves."""
        from airflow_provider_feishu_vc.client.async_client import shared_client_of

        return shared_client_of(self._async_settings, on_secret=amask_secret)

    async def aopen_client(self) -> AsyncFeishuVCClient:
        """:meth:`async_client` for a caller that holds the client through a long wait and ends it itself with
        ``await client.aclose()`` (a trigger: one object per wait instead of three)."""
        from airflow_provider_feishu_vc.client.async_client import join_session

        config, token_store = await self._async_settings()
        return join_session(config, on_secret=amask_secret, token_store=token_store)

    async def _async_settings(self) -> tuple[ClientConfig, VariableUserTokenStore | None]:
        config = await self.aget_config()
        return config, VariableUserTokenStore.for_config(config) if config.uses_user_token else None

    # -- calls -----------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a fresh access token; report Feishu's own code and message when that fails.

        Messages name fields by the form's labels and never by the connection id: Airflow tests a connection under
        a temporary random id that the user never sees.
        """
        conn = self.get_connection(self.feishu_vc_conn_id)
        try:
            config = ClientConfig.from_connection_parts(
                host=conn.host, login=conn.login, password=conn.password, port=conn.port, extra=conn.extra
            )
        except FeishuVCConfigError as error:
            return False, f"{form_label(error.field)}: {error.problem}"
        self._config = self._accepted(config)
        try:
            self.get_conn().access_token(force=True)
        except FeishuVCError as error:
            return False, str(error)
        return True, f"Fetched a {config.token_kind} access token from {config.base_url}."

    def create_export(self, export_type: str, *, user_id_type: str | None = None, **fields: Any) -> str:
        """Start an export; return its ``export_task_id``.

        :param export_type: ``meeting_list``, ``participant_list``, ``participant_quality_list`` or
            ``resource_reservation_list``.
        :param user_id_type: ``open_id`` (Feishu's default), ``union_id`` or ``user_id``.
        :param fields: the kind's fields by their Feishu names; times may be datetimes, ISO strings or unix seconds.
        """
        return self.get_conn().create_export(export_type, user_id_type=user_id_type, **fields)

    @staticmethod
    def resolve_export(export_type: str, *, user_id_type: str | None = None, **fields: Any) -> dict[str, Any]:
        """What :meth:`create_export` would ask Feishu for, validated, as plain values (kind, ``user_id_type``, body
        with times as unix seconds), without sending anything: what tells one export's request from another's."""
        from airflow_provider_feishu_vc.client.api import resolve_export

        return resolve_export(export_type, fields, user_id_type)

    def get_export(self, export_task_id: str) -> ExportTask:
        return self.get_conn().get_export(export_task_id)

    def check_export(self, export_task_id: str, *, retries: int | None = None) -> ExportTask | None:
        """The export's state, or None when Feishu could not be asked right now: a transient failure (rate limit,
        5xx, network) that outlasted the retries is logged and left to the next check, since it says nothing
        about the export. Waits use this, so that only their timeout or the export's own failure ends them.
        ``retries`` overrides the connection's ``max_retries`` (0 before deferring: the trigger keeps asking, and
        a worker slot should not wait out a busy rate limit)."""
        try:
            return self.get_conn().get_export(export_task_id, retries=retries)
        except FeishuVCError as error:
            if not error.retryable:
                raise
            self.log.warning("Could not check Feishu export %s this time: %s", export_task_id, error)
            return None

    def download_export(
        self,
        file_token: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        *,
        into_folder: bool | None = None,
        overwrite: bool = False,
        fallback_name: str = "export.xlsx",
        upload_journal: UploadJournal | None = None,
        landing_witness: LandingWitness | None = None,
    ) -> ObjectStoragePath:
        """Stream an export file to ``destination`` in constant memory; return where it landed.

        ``destination`` is a file path, or a folder that receives the file under Feishu's suggested name, made
        safe (``into_folder=True``; by default: a string ending in ``/`` or an existing folder). The file appears
        whole or not at all, checked against ``Content-Length``: on object stores it is uploaded straight to its
        key and the upload completes only at the end (and, without ``overwrite``, only if the key is still free);
        elsewhere it is written beside the target and renamed into place (see ``hooks/landing.py``).
        ``upload_journal`` is told when an S3 upload begins and ends, so that a later try can abort what a killed
        one left open; ``landing_witness`` what lands where, just before it becomes visible (``hooks/landing.py``).
        """
        from airflow_provider_feishu_vc.hooks.landing import Landing, refuse_existing
        from airflow_provider_feishu_vc.hooks.writing import Progress, write_chunks

        target = as_storage_path(destination)
        target_is_folder = into_folder
        if target_is_folder is None:
            target_is_folder = (isinstance(destination, str) and destination.endswith("/")) or target.is_dir()
        if not target_is_folder:
            refuse_existing(target, overwrite)
        with self.get_conn().open_download(file_token) as download:
            if target_is_folder:
                target = target / safe_filename(download.info.filename, fallback_name)
                refuse_existing(target, overwrite)
            landing = Landing.for_target(target, overwrite, upload_journal, landing_witness)
            try:
                handle, progress = landing.open(), Progress(self.log.info, download.info.size)
                received = write_chunks(handle, download.chunks, progress, in_thread=landing.writes_wait)
                landing.finish()
            except BaseException:
                landing.abandon()
                raise
        self.log.info("Downloaded %d bytes to %s", received, target)
        return target

    def download_table(
        self,
        file_token: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        export_type: str,
        output_format: str,
        *,
        into_folder: bool | None = None,
        overwrite: bool = False,
        fallback_name: str = "export.xlsx",
        timezone: str = "Asia/Shanghai",
        schema: str = "evolve",
        upload_journal: UploadJournal | None = None,
        landing_witness: LandingWitness | None = None,
    ) -> LandedTable:
        """Download an export file and land it as a typed table (``parquet`` or ``csv``; the ``tables`` extra).

        The xlsx goes to a temporary local folder first; the table lands as :meth:`download_export` lands files
        (whole or not at all). In a folder, the table is named after Feishu's file with the format's extension.
        ``timezone`` and ``schema`` are :func:`~airflow_provider_feishu_vc.tables.read_export`'s;
        ``upload_journal`` and ``landing_witness`` are :meth:`download_export`'s (the witness's note also holds
        ``"table": {"format", "rows", "schema_fingerprint"}``).
        """
        from airflow_provider_feishu_vc.hooks.landing import Landing, noting, refuse_existing
        from airflow_provider_feishu_vc.tables import TABLE_FORMATS, convert_export, schema_fingerprint

        if output_format not in TABLE_FORMATS:
            raise FeishuVCConfigError("output_format", f"is {output_format!r}; tables: {', '.join(TABLE_FORMATS)}")
        target = as_storage_path(destination)
        target_is_folder = into_folder
        if target_is_folder is None:
            target_is_folder = (isinstance(destination, str) and destination.endswith("/")) or target.is_dir()
        if not target_is_folder:
            refuse_existing(target, overwrite)
        with tempfile.TemporaryDirectory(prefix="feishu-vc-export-") as folder:
            workbook = self.download_export(file_token, f"{folder}/", into_folder=True, fallback_name=fallback_name)
            converted = f"{folder}/table.{output_format}"
            rows, schema_ = convert_export(
                workbook.path, export_type, converted, output_format, timezone=timezone, schema=schema
            )
            if target_is_folder:
                stem = workbook.name.rsplit(".", 1)[0] if "." in workbook.name else workbook.name
                target = target / safe_filename(f"{stem}.{output_format}", f"export.{output_format}")
                refuse_existing(target, overwrite)
            table = {"format": output_format, "rows": rows, "schema_fingerprint": schema_fingerprint(schema_)}
            witness = noting(landing_witness, table=table)
            Landing.for_target(target, overwrite, upload_journal, witness).land_file(converted)
        landed = LandedTable(target, output_format, rows, schema_fingerprint(schema_), schema_)
        self.log.info("Landed %d rows as %s at %s (schema %s)", landed.rows, output_format, target, landed.fingerprint)
        return landed
