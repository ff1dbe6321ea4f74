"""The emulator in this process: a uvicorn server in a thread, and the API tests use to steer and read it."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from typing import Any

from airflow_provider_feishu_vc.testing.emulator.app import EmulatorApp
from airflow_provider_feishu_vc.testing.emulator.faults import Fault, FaultPlan
from airflow_provider_feishu_vc.testing.emulator.options import EmulatorAddress, EmulatorOptions
from airflow_provider_feishu_vc.testing.emulator.state import TOKEN_PATH_PREFIXES, ExportJob, RequestRecord, TenantState


class FeishuVCEmulator(EmulatorAddress):
    """One Feishu tenant with one app, served over HTTP on a loopback port.

    Options (see :class:`~.options.EmulatorOptions`) are keyword arguments, readable and changeable as
    ``emulator.options`` or through :meth:`configure`. The test knobs of the tenant (``fail_next``,
    ``granted_scopes``, ``admin_role``, ``download_filename``) live on ``emulator.state``.
    """

    def __init__(self, **options: Any) -> None:
        self.options = EmulatorOptions()
        self.options.change(options)
        self._initial_options = dict(options)
        self.state = TenantState(self.options)
        self.faults = FaultPlan()
        self.app = EmulatorApp(self.state, self.faults, lambda: self.url)
        self.log_level = "critical"
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- running -------------------------------------------------------------------------------------------

    def start(self) -> FeishuVCEmulator:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.options.host, self.options.port))
        self._socket.listen(4096)
        self.options.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            http="h11",  # keeps header names as the app spells them (httptools lower-cases them)
            backlog=4096,
            timeout_keep_alive=30,
            ssl_certfile=self.options.tls_certfile,
            ssl_keyfile=self.options.tls_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="feishu-vc-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Feishu VC emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self.state.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FeishuVCEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- steering ------------------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change options of the running emulator (``export_delay=60``, ``rate_limit=3``, ...)."""
        self.options.change(changes)

    def reset(self) -> None:
        """Forget every token, export, request and pending fault, and undo :meth:`configure`: a fresh tenant
        with the options the emulator was made with (on the same address)."""
        self.faults.clear()
        fresh = dataclasses.asdict(EmulatorOptions())
        fresh.update(self._initial_options)
        fresh.update(host=self.options.host, port=self.options.port)
        self.options.change(fresh)
        self.state.reset()

    def inject(self, fault: Fault | str, *, path: str = "/open-apis/", times: int = 1, **params: Any) -> None:
        """Serve ``fault`` (a :class:`~.faults.Fault` or its name) for the next ``times`` requests under ``path``."""
        self.faults.inject(fault, path, times, params)

    def clear_faults(self) -> None:
        self.faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token at once (Feishu can revoke before expiry)."""
        self.state.revoke_tokens()

    def finish_now(self, export_task_id: str | None = None) -> None:
        """Make every pending export (or only ``export_task_id``) ready at once."""
        self.state.finish_now(export_task_id)

    # -- reading -------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    def count(self, path: str | None = None, status: int | None = None) -> int:
        return self.state.count(path, status)

    def token_requests(self) -> int:
        return sum(1 for record in self.state.requests if record.path.startswith(TOKEN_PATH_PREFIXES))

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far that is still known (for leak checks)."""
        return list(self.state.tokens)

    def export_ids(self) -> list[str]:
        return list(self.state.exports)

    def export(self, task_id: str) -> ExportJob:
        return self.state.exports[task_id]

    def export_ready_times(self) -> dict[str, float]:
        return self.state.export_ready_times()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()
