"""How both clients use httpx: one place for client options, TLS, timeouts and transport-error mapping."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError

if TYPE_CHECKING:
    import httpx

CHUNK_SIZE: int | None = None  # the transport's own pieces (64 KiB): no re-chunking copy
SecretCallback = Callable[[str], Any]


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext | bool:
    """One TLS context per process: loading the CA bundle takes tens of milliseconds, too long for a loop."""
    if not verify:
        return False
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def client_options(config: ClientConfig) -> dict[str, Any]:
    """Options of every httpx client: the API origin only, redirects never followed, the shared TLS context."""
    import httpx

    return {
        "base_url": config.base_url,
        "timeout": httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
        "verify": tls_context(config.verify_ssl),
        "follow_redirects": False,
    }


def transport_error(config: ClientConfig, error: Exception) -> FeishuVCTransportError:
    return FeishuVCTransportError(
        config.base_url, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    )


def lowercase_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
