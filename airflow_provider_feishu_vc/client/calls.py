"""What the sync and the async driver share: settings, retry policy, budgets, and the calls they run as flows.

A driver subclasses :class:`ExportCalls` and supplies ``run(flow)``: blocking (it returns the result) or
async (it returns an awaitable), so ``client.get_export(...)`` is a value on one and awaitable on the other.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from airflow_provider_feishu_vc.client import api
from airflow_provider_feishu_vc.client.budget import process_budgets
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.protocol import Flow, RetryPolicy, T
from airflow_provider_feishu_vc.client.stored_tokens import UserTokenStore
from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE, TokenCache, token_key


@cache
def connection_policy(max_retries: int) -> RetryPolicy:
    """The retry policy of a connection's ``max_retries`` (immutable, so one per value serves every client)."""
    return RetryPolicy(max_retries=max_retries)


class ExportCalls:
    """The export API of one app, for a driver to run."""

    driver_name = ""

    def __init__(
        self,
        config: ClientConfig,
        *,
        token_cache: TokenCache = TOKEN_CACHE,
        policy: RetryPolicy | None = None,
        token_store: UserTokenStore | None = None,
    ) -> None:
        self.config = config
        #: Where user tokens are shared with the deployment's other processes (None: this process only).
        self.token_store = token_store if config.uses_user_token else None
        if self.token_store is not None:
            from airflow_provider_feishu_vc.client import unsaved_tokens

            unsaved_tokens.watch(config, self.token_store)
        self.policy = policy or connection_policy(config.max_retries)
        self.budgets = process_budgets(config.app_key, config.rate_limit_per_minute)
        self.tokens = token_cache
        self.token_key = token_key(config)

    def run(self, flow: Flow[T]) -> Any:
        raise NotImplementedError

    def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> Any:
        """Start an export; the result is its ``export_task_id``."""
        return self.run(api.create_export(export_type, fields, user_id_type, self.policy, self.budgets))

    def get_export(self, export_task_id: str, *, retries: int | None = None) -> Any:
        """The export's state as an :class:`~.api.ExportTask`; ``retries`` overrides the connection's
        ``max_retries`` for this call (0: one look, for a caller that has a better way to wait)."""
        policy = self.policy if retries is None else replace(self.policy, max_retries=retries)
        return self.run(api.get_export(export_task_id, policy, self.budgets))

    def _renew_token(self, stale: str | None = None) -> Any:
        return self.run(self.tokens.renew(self.config, self.policy, stale=stale, shared=self.token_store is not None))
