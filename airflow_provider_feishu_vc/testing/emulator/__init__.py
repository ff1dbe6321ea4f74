"""A local Feishu VC server: token endpoints, the export API, rate limits and fault injection.

Written from the API facts alone (it imports nothing from the client), so it cannot share a misunderstanding
with the code it tests. The package is laid out as moto lays out a service:

- :mod:`.options`: every knob, declared once (constructor, command line, ``EmulatorProcess``);
- :mod:`.rules`: what Feishu refuses (error envelopes, each export kind's fields);
- :mod:`.state`: tokens, exports, rate windows, the request log (no HTTP);
- :mod:`.faults`: the faults tests inject, handed out by one ``take()``;
- :mod:`.app`: routes, envelopes, downloads and the ``/_emulator/`` admin paths;
- :mod:`.server`: :class:`FeishuVCEmulator`, a server in a thread with the API tests use;
- ``__main__``: ``python -m airflow_provider_feishu_vc.testing.emulator --port 8999 ...``.

In-process::

    with FeishuVCEmulator(app_id="cli_test", app_secret="secret", export_delay=1) as feishu:
        os.environ["AIRFLOW_CONN_FEISHU_VC_DEFAULT"] = feishu.connection()
"""

from __future__ import annotations

from airflow_provider_feishu_vc.testing.emulator.app import (
    ADMIN_CONFIG_PATH,
    ADMIN_EXPORTS_PATH,
    ADMIN_FAULTS_PATH,
    ADMIN_FINISH_PATH,
    ADMIN_RESET_PATH,
    ADMIN_STATS_PATH,
)
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from airflow_provider_feishu_vc.testing.emulator.options import EmulatorOptions
from airflow_provider_feishu_vc.testing.emulator.server import FeishuVCEmulator

__all__ = [
    "ADMIN_CONFIG_PATH",
    "ADMIN_EXPORTS_PATH",
    "ADMIN_FAULTS_PATH",
    "ADMIN_FINISH_PATH",
    "ADMIN_RESET_PATH",
    "ADMIN_STATS_PATH",
    "EmulatorOptions",
    "Fault",
    "FeishuVCEmulator",
]
