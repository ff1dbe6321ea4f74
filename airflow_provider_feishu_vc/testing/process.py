"""The emulator in a process of its own: for load tests, benchmarks and multi-process Airflow deployments,
where an in-process emulator would compete with the code under test for the interpreter."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from airflow_provider_feishu_vc.testing.emulator import (
    ADMIN_CONFIG_PATH,
    ADMIN_EXPORTS_PATH,
    ADMIN_FAULTS_PATH,
    ADMIN_FINISH_PATH,
    ADMIN_RESET_PATH,
    ADMIN_STATS_PATH,
    EmulatorOptions,
)
from airflow_provider_feishu_vc.testing.emulator.options import EmulatorAddress


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class EmulatorProcess(EmulatorAddress):
    """Run ``python -m airflow_provider_feishu_vc.testing.emulator`` with the given options (the names of
    :class:`~.emulator.EmulatorOptions`) on a free loopback port; read its request statistics with :meth:`stats`."""

    def __init__(self, **options: Any) -> None:
        self.options = EmulatorOptions()
        self.options.change(options)
        self.options.port = free_port(self.options.host)
        self._arguments = EmulatorOptions.command_line({**options, "port": self.options.port})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "airflow_provider_feishu_vc.testing.emulator", *self._arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    self.stop()
                    raise RuntimeError(f"the emulator process did not start: {error[-2000:]}") from None
                time.sleep(0.05)

    def _admin(self, path: str, changes: dict[str, Any] | None = None, timeout: float = 5) -> Any:
        data = None if changes is None else json.dumps(changes).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.load(answer)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._admin(ADMIN_STATS_PATH)
        return stats

    def configure(self, **changes: Any) -> None:
        """Change options of the running emulator (``rate_limit``, ``export_delay``, ...)."""
        self.options.change(changes)
        self._admin(ADMIN_CONFIG_PATH, changes)

    def reset(self) -> None:
        """Forget every token, export and request of the running emulator."""
        self._admin(ADMIN_RESET_PATH, {})

    def inject(self, fault: str, *, path: str = "/open-apis/", times: int = 1, **params: Any) -> None:
        """Serve ``fault`` (a :class:`~airflow_provider_feishu_vc.testing.emulator.faults.Fault` value) to the next
        ``times`` requests whose path starts with ``path``, as :meth:`FeishuVCEmulator.inject` does in-process."""
        wanted = {"fault": getattr(fault, "value", fault), "path": path, "times": times, "params": params}
        self._admin(ADMIN_FAULTS_PATH, wanted)

    def finish_now(self, export_task_id: str | None = None) -> None:
        """Make every pending export of the running emulator (or only ``export_task_id``) done now."""
        self._admin(ADMIN_FINISH_PATH, {} if export_task_id is None else {"export_task_id": export_task_id})

    def export_ready_times(self) -> dict[str, float]:
        ready_times: dict[str, float] = self._admin(ADMIN_EXPORTS_PATH, timeout=30)
        return ready_times

    def export_requests(self) -> dict[str, dict[str, Any]]:
        """What each export was asked for (``{"kind", "body"}``), by export id."""
        requests: dict[str, dict[str, Any]] = self._admin(ADMIN_EXPORTS_PATH + "?detail=1", timeout=30)
        return requests

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
