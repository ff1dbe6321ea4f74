"""Store a user's first tokens for a ``feishu_vc`` connection: exchange the authorization code from the user's
sign-in and keep the tokens where every process of the deployment reads them.

    python -m airflow_provider_feishu_vc.user_tokens <conn_id> <code> <redirect_uri>

Run it where the deployment's metadata DB is reachable (where ``airflow`` CLI commands work), within the five
minutes the code lives. It writes the Variable ``feishu_vc_user_tokens__<app id>__<grant>`` and, for a connection
kept in the metadata DB, sets its ``refresh_token`` extra to the grant's first refresh token, which makes the
connection act as the user (and names the Variable it reads). For a connection from the environment or a secrets
backend it says what to add and how to read it from the Variable. It prints no token, and exits 1 when the tokens
could not be stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens
    from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore


#: Attempts at writing the first tokens before giving up (the authorization code is spent by then).
SAVE_ATTEMPTS = 3


def store_first_user_tokens(conn_id: str, code: str, redirect_uri: str) -> str:
    """Exchange ``code`` for the user's first tokens and store them; return what was done, in words. Raises
    ``FeishuVCError`` when Feishu refuses the code or the tokens cannot be stored."""
    from airflow.models.connection import Connection

    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
    from airflow_provider_feishu_vc.client.user_oauth import exchange_authorization_code
    from airflow_provider_feishu_vc.compat import mask_secret
    from airflow_provider_feishu_vc.hooks.feishu_vc import config_from_connection
    from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore

    # Outside a task the SDK sees only environment connections: read the metadata DB's as the CLI does.
    config = config_from_connection(Connection.get_connection_from_secrets(conn_id))
    with FeishuVCClient(config, on_secret=mask_secret) as client:
        tokens = client.run(exchange_authorization_code(config, code, redirect_uri, client.policy))
    # The grant starts from this first refresh token: the connection is given it, and the store is named by it.
    store = VariableUserTokenStore.for_config(replace(config, refresh_token=tokens.refresh_token))
    _save(store, tokens)
    hours = (tokens.access_expires_at - time.time()) / 3600
    return (
        f"Stored the user's tokens of connection {conn_id!r} in the Variable {store.key}; "
        f"{_act_as_user(conn_id, tokens.refresh_token or '', store.key)}. The access token lasts {hours:.1f} h; every "
        "refresh renews it and rotates the refresh token."
    )


def _save(store: VariableUserTokenStore, tokens: StoredUserTokens) -> None:
    from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError

    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            store.save(tokens)
            return
        except FeishuVCTokenStoreError as error:
            if attempt == SAVE_ATTEMPTS:
                raise FeishuVCTokenStoreError(
                    f"Feishu issued the user's tokens, but they were NOT stored ({error}). The authorization code is "
                    "spent: once the metadata DB is reachable from here, have the user sign in again and run this "
                    "command with the new code."
                ) from None
            time.sleep(attempt)


def _act_as_user(conn_id: str, refresh_token: str, store_key: str) -> str:
    """Put the first refresh token in a metadata-DB connection's extras, which makes the connection act as the
    user (the Variable's newer tokens win over it from then on); for any other connection, say what to add."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError

    how_to_read = (
        f'read it with `airflow variables get {store_key}`: a JSON object whose "grant" field is the value (keep '
        "it secret; it is spent already and only names the Variable)"
    )
    try:
        with create_session() as session:
            stored = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
            if stored is not None:
                stored.set_extra(json.dumps({**stored.extra_dejson, "refresh_token": refresh_token}))
    except Exception as error:
        raise FeishuVCTokenStoreError(
            f"The user's tokens are stored in the Variable {store_key}, but connection {conn_id!r} could not be "
            f"updated ({type(error).__name__}). Add the extra refresh_token to it yourself: {how_to_read}."
        ) from None
    if stored is None:
        return (
            f"connection {conn_id!r} is not in the metadata DB (it comes from an environment variable or a secrets "
            "backend), so it does not act as the user yet. Add the extra refresh_token to it, set to the grant the "
            f"tokens were stored under; {how_to_read}. E.g. for an environment variable: "
            f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "feishu_vc", ..., "extra": {{"refresh_token": '
            '"<grant>"}}\''
        )
    return f"connection {conn_id!r} now acts as the user"


def main(argv: list[str] | None = None) -> int:
    from airflow_provider_feishu_vc.client.errors import FeishuVCError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("conn_id", help="the feishu_vc connection the user's tokens are for")
    parser.add_argument("code", help="the authorization code from the redirect after the user signed in")
    parser.add_argument("redirect_uri", help="the redirect URL the sign-in used (as registered with the app)")
    args = parser.parse_args(argv)
    try:
        print(store_first_user_tokens(args.conn_id, args.code, args.redirect_uri))
    except FeishuVCError as error:
        print(f"Could not store the user's tokens: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
