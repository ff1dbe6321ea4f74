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

from airflow_provider_feishu_vc.testing.emulator import ADMIN_CONFIG_PATH, ADMIN_EXPORTS_PATH, ADMIN_STATS_PATH


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class EmulatorProcess:
    """Run ``python -m airflow_provider_feishu_vc.testing.emulator`` with the given options (CLI names, without
    dashes: ``export_delay=1``) on a free loopback port; read its request statistics with :meth:`stats`."""

    def __init__(self, *, host: str = "127.0.0.1", app_id: str = "cli_emulator", app_secret: str = "emulator-secret",
                 **options: Any) -> None:  # fmt: skip
        self.host, self.port = host, free_port(host)
        self.app_id, self.app_secret = app_id, app_secret
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "airflow_provider_feishu_vc.testing.emulator", "--host", self.host,
                   "--port", str(self.port), "--app-id", self.app_id, "--app-secret", self.app_secret]  # fmt: skip
        for name, value in self.options.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
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

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + ADMIN_STATS_PATH, timeout=5) as answer:
            return json.load(answer)

    def configure(self, **changes: Any) -> None:
        """Change a running emulator: ``rate_limit`` (requests per window)."""
        request = urllib.request.Request(
            self.url + ADMIN_CONFIG_PATH, data=json.dumps(changes).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=5):
            pass

    def export_ready_times(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + ADMIN_EXPORTS_PATH, timeout=30) as answer:
            return json.load(answer)

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
