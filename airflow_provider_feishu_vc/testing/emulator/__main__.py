"""``python -m airflow_provider_feishu_vc.testing.emulator --port 8999 --app-id cli_x --app-secret s [-v]``"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from airflow_provider_feishu_vc.testing.emulator.options import EmulatorOptions
from airflow_provider_feishu_vc.testing.emulator.server import FeishuVCEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_feishu_vc.testing.emulator",
        description="Run a local Feishu VC API emulator (no account, no network). Point a feishu_vc connection at "
        'the URL it prints, e.g. AIRFLOW_CONN_FEISHU_VC_DEFAULT=\'{"conn_type": "feishu_vc", "host": '
        '"http://127.0.0.1:8999", "login": "cli_emulator", "password": "emulator-secret"}\'.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    EmulatorOptions.add_arguments(parser)
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="print a line per request: time, method, path, status (query values and tokens shown as ***)",
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    options = EmulatorOptions.from_arguments(arguments)
    emulator = FeishuVCEmulator(**vars(options))
    if arguments.verbose:
        emulator.app.request_log = lambda line: print(line, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly (temporary files) on terminate()
    with emulator:
        print(f"Feishu VC emulator listening on {emulator.url} (app {options.app_id})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
