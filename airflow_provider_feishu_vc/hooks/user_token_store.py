"""Where a connection's user tokens live between processes: an Airflow Variable per user grant."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.client.stored_tokens import RefreshLease, StoredUserTokens

log = logging.getLogger(__name__)


class VariableUserTokenStore:
    """A user grant's current tokens, shared by every worker, triggerer and the API server of a deployment through an
    Airflow Variable: kept in the metadata DB (encrypted with the Fernet key), shown masked (its key names a token),
    rewritten on every refresh because each refresh token works once. A second Variable, ``<key>__lease``, says which
    process may refresh the grant now (see ``client/user_grant.py``).

    A read or write that fails raises ``FeishuVCTokenStoreError`` (retryable): the client core decides what to do
    (retry, keep the tokens it holds, refresh nothing it cannot save)."""

    DESCRIPTION = "Feishu VC user tokens of a connection, rotated by the provider on every refresh. Do not edit."
    LEASE_DESCRIPTION = "Which process may refresh the Feishu VC user tokens of the Variable of the same name now."

    def __init__(self, key: str) -> None:
        self.key = key
        self.lease_key = f"{key}__lease"

    @classmethod
    def for_config(cls, config: ClientConfig) -> VariableUserTokenStore:
        """The store of the user grant a connection starts from: named by the app and the grant's first token (its
        ``refresh_token`` extra, else its ``user_access_token``), not by the connection id. Every connection holding
        that grant shares it, and so does the copy under a random id that Airflow's Test button works on."""
        seed = config.refresh_token or config.user_access_token or ""
        return cls(f"feishu_vc_user_tokens__{config.app_id}__{hashlib.sha256(seed.encode()).hexdigest()[:16]}")

    def _read(self, key: str) -> str | None:
        from airflow_provider_feishu_vc import compat

        try:
            return compat.get_variable(key)
        except Exception as error:
            raise self._unreachable("read", key, error) from None

    def _write(self, key: str, value: str, description: str) -> None:
        from airflow_provider_feishu_vc import compat

        try:
            compat.set_variable(key, value, description)
        except Exception as error:
            raise self._unreachable("write", key, error) from None

    @staticmethod
    def _unreachable(verb: str, key: str, error: Exception) -> FeishuVCTokenStoreError:
        from airflow_provider_feishu_vc.compat import redact

        # A DB error quotes its statement's parameters: the tokens are masked by now, and only the first line says
        # what went wrong anyway.
        detail = redact(str(error)).strip().splitlines()[0][:300] if str(error).strip() else ""
        failure = FeishuVCTokenStoreError(
            f"Could not {verb} the shared user tokens (Variable {key}): {type(error).__name__}"
            + (f": {detail}" if detail else "")
        )
        log.warning("%s", failure)
        return failure

    def load(self) -> StoredUserTokens | None:
        from airflow_provider_feishu_vc.client.stored_tokens import StoredUserTokens

        return StoredUserTokens.from_json(self._read(self.key))

    def save(self, tokens: StoredUserTokens) -> None:
        self._write(self.key, tokens.to_json(), self.DESCRIPTION)

    def load_lease(self) -> RefreshLease | None:
        from airflow_provider_feishu_vc.client.stored_tokens import RefreshLease

        return RefreshLease.from_json(self._read(self.lease_key))

    def save_lease(self, lease: RefreshLease) -> None:
        self._write(self.lease_key, lease.to_json(), self.LEASE_DESCRIPTION)

    # The SDK's Variable calls block: in a trigger they run in a thread (asgiref, as the SDK's own async calls do).

    async def aload(self) -> StoredUserTokens | None:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.load)()

    async def asave(self, tokens: StoredUserTokens) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self.save)(tokens)

    async def aload_lease(self) -> RefreshLease | None:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.load_lease)()

    async def asave_lease(self, lease: RefreshLease) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self.save_lease)(lease)
