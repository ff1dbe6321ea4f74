"""A user's tokens from Feishu's OAuth endpoint (``/open-apis/authen/v2/oauth/token``): the first ones for the code
a sign-in handed out, refreshes, and the connection's own user token; each registered with the secret masker before
anything (a failing save's error, say) can quote it. What to do with them across processes is ``user_grant.py``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.client.protocol import Flow, RetryPolicy
from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens
from airflow_provider_feishu_vc.client.tokens import (
    AccessToken,
    mask_secrets,
    post_unauthenticated,
    token_fields,
    token_from_answer,
)

USER_TOKEN_PATH = "/open-apis/authen/v2/oauth/token"


def refresh_alone(
    config: ClientConfig, policy: RetryPolicy, current: AccessToken | None, stale: str | None
) -> Flow[AccessToken]:
    """Without a shared store: the connection's user token, then refreshes with the newest refresh token held."""
    if current is None and config.user_access_token and config.user_access_token != stale:
        return (yield from connection_user_token(config.user_access_token))
    refresh_token = (current.refresh_token if current else None) or config.refresh_token
    if not refresh_token:
        raise no_refresh_token()
    payload = yield from refresh(config, refresh_token, policy)
    return (yield from user_token_from(payload))


def exchange_authorization_code(
    config: ClientConfig, code: str, redirect_uri: str, policy: RetryPolicy
) -> Flow[StoredUserTokens]:
    """The user's first tokens, for the authorization code the user's sign-in handed out (once, within minutes)."""
    payload = yield from _oauth_grant(config, policy, "authorization_code", code=code, redirect_uri=redirect_uri)
    token = yield from user_token_from(payload)
    if not token.refresh_token:
        raise FeishuVCAPIError(
            code=0,
            msg="Feishu sent no refresh_token: the app needs the offline_access scope, and the sign-in must ask for it",
            http_status=200,
        )
    return to_store(token, payload, generation=1, grant=token.refresh_token)


def connection_user_token(value: str) -> Flow[AccessToken]:
    """The user token the connection holds, registered with the masker. Feishu does not say how long a given user
    token has left: it is used until Feishu rejects it."""
    yield from mask_secrets(value)
    return AccessToken(value, time.monotonic() + 7200, 7200)


def user_token_from(payload: Mapping[str, Any]) -> Flow[AccessToken]:
    """The access and refresh tokens of an OAuth answer, registered with the masker before anything (a failing
    save's error, say) can quote them."""
    token = token_from_answer(payload, "access_token", "expires_in")
    yield from mask_secrets(token.value, token.refresh_token)
    return token


def no_refresh_token() -> FeishuVCAPIError:
    return FeishuVCAPIError(
        code=99991677,
        msg="the user access token is invalid or expired and the connection has no refresh_token",
        http_status=401,
    )


def to_store(token: AccessToken, payload: Mapping[str, Any], *, generation: int, grant: str | None) -> StoredUserTokens:
    source = token_fields(payload, "access_token")
    refresh_lifetime = source.get("refresh_token_expires_in")
    refresh_expires_at = None
    if isinstance(refresh_lifetime, (int, float)) and not isinstance(refresh_lifetime, bool) and refresh_lifetime > 0:
        refresh_expires_at = time.time() + min(float(refresh_lifetime), 10 * 365 * 86400.0)
    return StoredUserTokens(
        token.value,
        time.time() + token.lifetime,
        token.lifetime,
        token.refresh_token,
        refresh_expires_at,
        generation,
        grant,
    )


def refresh(config: ClientConfig, refresh_token: str, policy: RetryPolicy) -> Flow[dict[str, Any]]:
    return (yield from _oauth_grant(config, policy, "refresh_token", refresh_token=refresh_token))


def _oauth_grant(config: ClientConfig, policy: RetryPolicy, grant_type: str, **fields: str) -> Flow[dict[str, Any]]:
    """One request to the v2 OAuth token endpoint, as the app (client) asking for ``grant_type``."""
    body = {"grant_type": grant_type, "client_id": config.app_id, "client_secret": config.app_secret, **fields}
    return (yield from post_unauthenticated(USER_TOKEN_PATH, body, policy))
