"""The emulator's options, declared once: the constructor, the command line and ``EmulatorProcess`` read them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _option(default: Any, help: str, cli: bool = True) -> Any:
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass
class EmulatorOptions:
    """Every knob of one emulated Feishu tenant with one app. Tests may change them on a running emulator."""

    app_id: str = _option("cli_emulator", "the only App ID accepted (others get 10003)")
    app_secret: str = _option("emulator-secret", "the only App Secret accepted (others get 10015)")
    host: str = _option("127.0.0.1", "loopback address to listen on")
    port: int = _option(0, "port to listen on (0: a free one)")
    export_delay: float = _option(2.0, "seconds until an export is done")
    export_delay_max: float | None = _option(None, "if set, each export takes a random time between the two")
    processing_polls: int | None = _option(
        None, "if set, an export answers 'processing' to this many status queries, then is done (not timed)"
    )
    token_ttl: float = _option(7200.0, "lifetime of issued tokens in seconds (Feishu: 7200)")
    rate_limit: int = _option(100, "requests allowed per window, per endpoint (Feishu: 100)")
    rate_window: float = _option(60.0, "seconds of the rate-limit window (Feishu: 60)")
    app_ticket: str = _option("emulator-app-ticket", "the app_ticket a store app must present")
    refresh_token: str | None = _option("emulator-refresh-token", "the user refresh token accepted at first")
    refresh_token_ttl: float = _option(30 * 86400.0, "lifetime of issued refresh tokens in seconds (Feishu: 30 days)")
    authorization_code: str = _option("emulator-auth-code", "the authorization code a user's login hands out (once)")
    meeting_every: int = _option(3600, "a meeting_list export holds one meeting every this many seconds")
    rows: int | None = _option(None, "force the data rows of every export")
    known_meetings_only: bool = _option(
        False,
        "a participant_list export is only for a meeting a meeting_list export listed, at its times (else 121004, as "
        "Feishu answers for a meeting it does not have); off: any meeting number is served",
    )
    failing_meetings: str = _option(
        "", "meetings whose participant_list create fails: 'meeting_no:code,...' with code 121004 or 121005"
    )
    header_style: str = _option(
        "documented",
        "headers of the files: documented (Chinese, as Feishu documents them), newer, english (Lark's labels)",
    )
    stored_workbooks: bool = _option(
        False, "write workbooks uncompressed with a minimal writer (download benchmarks: size follows rows)"
    )
    tls_certfile: str | None = _option(None, "serve https with this certificate (PEM)")
    tls_keyfile: str | None = _option(None, "the certificate's private key (PEM)")

    def change(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` by option name; an unknown name is refused."""
        known = {option.name for option in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown emulator option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name, value in changes.items():
            setattr(self, name, value)

    def export_seconds(self, pick: Any) -> float:
        """How long a new export takes: ``export_delay``, or a ``pick(low, high)`` up to ``export_delay_max``."""
        if self.export_delay_max is None:
            return float(self.export_delay)
        return float(pick(self.export_delay, self.export_delay_max))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for option in dataclasses.fields(cls):
            if option.metadata["cli"]:
                kind = _value_type(option.default, option.type)
                parser.add_argument(
                    f"--{option.name.replace('_', '-')}",
                    type=kind,
                    default=option.default,
                    help=option.metadata["help"],
                )

    @classmethod
    def from_arguments(cls, arguments: argparse.Namespace) -> EmulatorOptions:
        return cls(**{option.name: getattr(arguments, option.name) for option in dataclasses.fields(cls)})

    @classmethod
    def command_line(cls, options: Mapping[str, Any]) -> list[str]:
        """``--name value`` pairs for ``options`` (checked against the declared names)."""
        cls().change(options)
        return [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def _flag(text: str) -> bool:
    if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text.strip().lower() in ("true", "1", "yes")


def _value_type(default: Any, annotation: object) -> Any:
    type_name = str(annotation)  # dataclass fields hold their annotation as a string under postponed evaluation
    if isinstance(default, bool) or type_name == "bool":
        return _flag
    for kind in (int, float, str):
        if (isinstance(default, kind) and not isinstance(default, bool)) or type_name.startswith(kind.__name__):
            return kind
    return str


class EmulatorAddress:
    """What tests read of any emulator, in this process or in another: its URL, app and Airflow connection."""

    options: EmulatorOptions

    @property
    def url(self) -> str:
        return f"{'https' if self.options.tls_certfile else 'http'}://{self.options.host}:{self.options.port}"

    @property
    def app_id(self) -> str:
        return self.options.app_id

    @property
    def app_secret(self) -> str:
        return self.options.app_secret

    def connection(self, conn_type: str = "feishu_vc", **extra: Any) -> str:
        """The Airflow connection for this emulator as JSON, e.g. for ``AIRFLOW_CONN_FEISHU_VC_DEFAULT``;
        ``extra`` becomes the connection's extras (``rate_limit_per_minute=...``)."""
        connection: dict[str, Any] = {
            "conn_type": conn_type, "host": self.url, "login": self.app_id, "password": self.app_secret,
        }  # fmt: skip
        if extra:
            connection["extra"] = extra
        return json.dumps(connection)
