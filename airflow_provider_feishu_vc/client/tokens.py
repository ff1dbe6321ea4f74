"""Access tokens: what one is, how Feishu's token answers are read, and how an app obtains its tenant token (as
flows). A user's tokens, shared by every process of a deployment, are :mod:`.user_grant`'s; the process-wide cache
that hands tokens out is :mod:`.token_cache`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import STALE_APP_TICKET_CODE, FeishuVCAPIError
from airflow_provider_feishu_vc.client.protocol import Flow, HttpRequest, MaskSecret, RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens

TENANT_TOKEN_INTERNAL_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
STORE_APP_TOKEN_PATH = "/open-apis/auth/v3/app_access_token"
STORE_TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token"
APP_TICKET_RESEND_PATH = "/open-apis/auth/v3/app_ticket/resend"


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)  # user tokens: the single-use successor
    #: Seconds before expiry at which the token stops counting as fresh (None: the usual margin).
    margin: float | None = None
    #: User tokens: the shared set this token belongs to (its generation tells newer sets from older ones).
    shared: StoredUserTokens | None = field(default=None, repr=False, compare=False)

    def is_fresh(self, now: float | None = None) -> bool:
        """Fresh until a few minutes before expiry (a quarter of its life for short-lived tokens)."""
        margin = min(300.0, self.lifetime / 4) if self.margin is None else self.margin
        return (time.monotonic() if now is None else now) < self.expires_at - margin

    def fresh_for(self, seconds: float) -> AccessToken:
        """The same token, counting as fresh for ``seconds`` more at most (then the cache asks again)."""
        return replace(self, margin=max(0.0, self.expires_at - time.monotonic() - seconds))


def token_fields(payload: Mapping[str, Any], value_key: str) -> Mapping[str, Any]:
    """Where a token answer keeps its fields: in the answer itself (v2 OAuth) or in its ``data`` (v1)."""
    data = payload.get("data")
    return data if value_key not in payload and isinstance(data, dict) else payload


def token_from_answer(payload: Mapping[str, Any], value_key: str, ttl_key: str) -> AccessToken:
    source = token_fields(payload, value_key)
    value = source.get(value_key)
    raw_lifetime: Any = source.get(ttl_key)
    try:
        lifetime = float(raw_lifetime)
    except (TypeError, ValueError):
        lifetime = 0.0
    refresh_token = source.get("refresh_token")
    if not isinstance(value, str) or not value or not lifetime > 0 or lifetime == float("inf"):
        raise FeishuVCAPIError(code=0, msg=f"the token answer has no usable {value_key} / {ttl_key}", http_status=200)
    return AccessToken(
        value=value,
        expires_at=time.monotonic() + lifetime,
        lifetime=lifetime,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
    )


def post_unauthenticated(path: str, body: Mapping[str, Any], policy: RetryPolicy) -> Flow[dict[str, Any]]:
    response = yield from call_with_retries(HttpRequest("POST", path, json_body=body), policy, authenticated=False)
    return response.payload


def mask_secrets(*secrets: str | None) -> Flow[None]:
    for secret in secrets:
        if secret:
            yield MaskSecret(secret)


def fetch_tenant_token(config: ClientConfig, policy: RetryPolicy) -> Flow[AccessToken]:
    """The tenant access token of a self-built app, or of a store app (through its app access token)."""
    credentials = {"app_id": config.app_id, "app_secret": config.app_secret}
    if config.app_type == "self_built":
        payload = yield from post_unauthenticated(TENANT_TOKEN_INTERNAL_PATH, credentials, policy)
        return token_from_answer(payload, "tenant_access_token", "expire")

    try:
        app_payload = yield from post_unauthenticated(
            STORE_APP_TOKEN_PATH, {**credentials, "app_ticket": config.app_ticket}, policy
        )
    except FeishuVCAPIError as error:
        if error.code == STALE_APP_TICKET_CODE:
            yield from post_unauthenticated(APP_TICKET_RESEND_PATH, credentials, policy)
        raise
    app_token = token_from_answer(app_payload, "app_access_token", "expire")
    tenant_body = {"app_access_token": app_token.value, "tenant_key": config.tenant_key}
    payload = yield from post_unauthenticated(STORE_TENANT_TOKEN_PATH, tenant_body, policy)
    return token_from_answer(payload, "tenant_access_token", "expire")
