"""Client settings and their validation: everything a Feishu VC client needs, checked once, Airflow-free."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError

FEISHU_ORIGIN = "https://open.feishu.cn"
LARK_ORIGIN = "https://open.larksuite.com"
DOMAIN_ALIASES = {"feishu": FEISHU_ORIGIN, "lark": LARK_ORIGIN, "larksuite": LARK_ORIGIN}

APP_TYPES = ("self_built", "store")

#: Extras accepted on a ``feishu_vc`` connection, with the JSON types allowed for each.
EXTRA_TYPES: Mapping[str, tuple[type, ...]] = {
    "app_type": (str,),
    "tenant_key": (str,),
    "app_ticket_secret": (str,),
    "user_access_token": (str,),
    "refresh_token": (str,),
    "timeout": (int, float),
    "max_retries": (int,),
    "rate_limit_per_minute": (int, float),
    "verify_ssl": (bool,),
}

#: Extras whose name changed, and why the old name is refused.
RENAMED_EXTRAS: Mapping[str, str] = {"app_ticket": "app_ticket_secret"}

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RATE_LIMIT_PER_MINUTE = 100.0
#: The longest a single HTTP request may wait, and the most retries: beyond these a setting is a mistake.
MAX_TIMEOUT = 3600.0
MAX_RETRIES = 100


@dataclass(frozen=True)
class ClientConfig:
    """Validated settings of one Feishu app. ``repr`` never shows a secret."""

    base_url: str
    app_id: str
    app_secret: str = field(repr=False)
    app_type: str = "self_built"
    tenant_key: str | None = None
    app_ticket: str | None = field(default=None, repr=False)
    user_access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    rate_limit_per_minute: float = DEFAULT_RATE_LIMIT_PER_MINUTE
    verify_ssl: bool = True

    def __post_init__(self) -> None:
        if not self.app_id:
            raise FeishuVCConfigError("login (App ID)", "is empty; set it to the app's App ID (cli_...)")
        if not self.app_secret:
            raise FeishuVCConfigError("password (App Secret)", "is empty; set it to the app's App Secret")
        if self.app_type not in APP_TYPES:
            raise FeishuVCConfigError("extra.app_type", f"is {self.app_type!r}; allowed: {', '.join(APP_TYPES)}")
        if self.app_type == "store" and not self.tenant_key:
            raise FeishuVCConfigError("extra.tenant_key", "is required when app_type is 'store'")
        if self.app_type == "store" and not self.app_ticket and not self.uses_user_token:
            raise FeishuVCConfigError("extra.app_ticket_secret", "is required when app_type is 'store'")
        if not 0 < self.timeout <= MAX_TIMEOUT:  # also refuses nan
            raise FeishuVCConfigError(
                "extra.timeout", f"is {self.timeout!r}; must be a number of seconds above 0, at most {MAX_TIMEOUT:g}"
            )
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise FeishuVCConfigError("extra.max_retries", f"is {self.max_retries!r}; must be 0 to {MAX_RETRIES}")
        if not 1 <= self.rate_limit_per_minute < float("inf"):
            raise FeishuVCConfigError(
                "extra.rate_limit_per_minute", f"is {self.rate_limit_per_minute!r}; must be a number of at least 1"
            )

    @property
    def uses_user_token(self) -> bool:
        return bool(self.user_access_token or self.refresh_token)

    @property
    def token_kind(self) -> str:
        return "user" if self.uses_user_token else "tenant"

    @property
    def app_key(self) -> tuple[str, str, str]:
        """What identifies one app in one tenant: the key of its token, HTTP pool and rate budget."""
        return (self.base_url, self.app_id, self.tenant_key or "")

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.app_secret, self.app_ticket, self.user_access_token, self.refresh_token) if s]

    @classmethod
    def from_connection_parts(
        cls,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        port: int | None = None,
        extra: str | Mapping[str, Any] | None = None,
    ) -> ClientConfig:
        """Build settings from the fields of an Airflow connection (host, login, password, port, extra)."""
        if port and "://" in (host or ""):  # 0 is what Airflow's form sends for the hidden field
            raise FeishuVCConfigError(
                "port",
                f"is {port!r}, but the API origin {host!r} is complete and the connection form hides Port: put the "
                "port in the API origin (e.g. http://127.0.0.1:8080) and leave Port empty",
            )
        extras = parse_extras(extra)
        options: dict[str, Any] = {k: v for k, v in extras.items() if v is not None}
        if "app_ticket_secret" in options:
            options["app_ticket"] = options.pop("app_ticket_secret")
        if "timeout" in options:
            options["timeout"] = float(options["timeout"])
        if "rate_limit_per_minute" in options:
            options["rate_limit_per_minute"] = float(options["rate_limit_per_minute"])
        return cls(
            base_url=normalize_base_url(host if not port or not host else f"{host.strip()}:{port}"),
            app_id=(login or "").strip(),
            app_secret=password or "",
            **options,
        )


def parse_extras(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse and type-check a connection's extras; unknown keys and wrong types are refused by name."""
    if extra is None or extra == "":
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as error:
            raise FeishuVCConfigError("extra", f"is not valid JSON ({error.msg} at position {error.pos})") from None
    if not isinstance(extra, Mapping):
        raise FeishuVCConfigError("extra", f"must be a JSON object, got {type(extra).__name__}")
    parsed: dict[str, Any] = {}
    for key, value in extra.items():
        name = key.removeprefix("extra__feishu_vc__")
        if name not in EXTRA_TYPES and name not in RENAMED_EXTRAS:
            raise FeishuVCConfigError(f"extra.{name}", f"is not a known option; allowed: {', '.join(EXTRA_TYPES)}")
        if value is None or value == "":
            continue
        if name in RENAMED_EXTRAS:
            raise FeishuVCConfigError(
                f"extra.{name}",
                f"is now called {RENAMED_EXTRAS[name]}: Airflow hides an extra's value only when its name says it is "
                "secret. Rename the key",
            )
        allowed = EXTRA_TYPES[name]
        value = _from_text(value, allowed)
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise FeishuVCConfigError(f"extra.{name}", f"must be {names}, got {type(value).__name__} {value!r}")
        parsed[name] = value
    return parsed


def _from_text(value: Any, allowed: tuple[type, ...]) -> Any:
    """Read numbers and booleans given as text (URI-form connections carry every extra as a string)."""
    if not isinstance(value, str) or str in allowed:
        return value
    text = value.strip().lower()
    if bool in allowed and text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        if kind in allowed:
            try:
                return kind(text)
            except ValueError:
                continue
    return value


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None) -> str:
    """Turn a connection's host (an origin, a bare host name, or ``feishu`` / ``lark``) into an API origin.

    ``https`` is required except for loopback hosts (the local emulator), where plain ``http`` is allowed.
    """
    host = (host or "").strip().rstrip("/")
    if not host:
        return FEISHU_ORIGIN
    if host.lower() in DOMAIN_ALIASES:
        return DOMAIN_ALIASES[host.lower()]
    if "@" in host:  # before anything quotes it: the part before the @ may be a password
        raise FeishuVCConfigError("host", "must not carry credentials; put App ID and App Secret in login / password")
    if any(ch.isspace() or not ch.isprintable() for ch in host):
        raise FeishuVCConfigError(
            "host", f"{host!r} holds spaces or control characters; give an origin such as {FEISHU_ORIGIN}"
        )
    try:
        if "://" not in host:
            bare = urlsplit(f"//{host}").hostname or ""
            host = f"{'http' if is_loopback(bare) else 'https'}://{host}"
        parts = urlsplit(host)
        hostname, port = parts.hostname, parts.port  # port: ValueError when it is not a number from 0 to 65535
    except ValueError as error:
        raise FeishuVCConfigError(
            "host", f"{host!r} is not an http(s) origin ({error}); e.g. {FEISHU_ORIGIN}"
        ) from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise FeishuVCConfigError("host", f"{host!r} is not an http(s) origin such as {FEISHU_ORIGIN}")
    if port == 0:
        raise FeishuVCConfigError("host", f"{host!r} names port 0; give the origin's real port or none")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise FeishuVCConfigError(
            "host", f"{host!r} uses plain http; only https is allowed except for loopback hosts (127.0.0.1, localhost)"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise FeishuVCConfigError("host", f"{host!r} must be an origin only (no path or query); e.g. {FEISHU_ORIGIN}")
    if parts.username or parts.password:
        raise FeishuVCConfigError("host", "must not carry credentials; put App ID and App Secret in login / password")
    return f"{parts.scheme}://{parts.netloc}"
