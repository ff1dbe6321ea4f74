"""The drivers' side of a user-token set this process could not save (:mod:`.user_grant`): offered to the store in
the background while the process lives (a daemon thread for blocking callers, a task on the event loop for async
ones, so that no event loop ever blocks on it), again when a client closes, and at the interpreter's exit. When it
still cannot be saved, the log says so at error level, with the command that re-grants.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from typing import Any

from airflow_provider_feishu_vc.client import grant_process, user_grant
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError
from airflow_provider_feishu_vc.client.grant_process import GrantInProcess
from airflow_provider_feishu_vc.client.protocol import Driving, Flow, SharedUserTokens, Sleep, T
from airflow_provider_feishu_vc.client.stored_tokens import UserTokenStore

log = logging.getLogger(__name__)

_guard = threading.Lock()
#: Every grant with a set this process could not save, with a store to offer it to.
_UNSAVED: dict[int, tuple[GrantInProcess, UserTokenStore]] = {}
_tasks: set[asyncio.Task[None]] = set()
#: The store of every grant this process acts with (by grant): a set left unsaved by a fetch cut short during its
#: save (a task's time limit, Ctrl-C, a cancelled wait), which no failed save handed to :func:`keep_saving`, is
#: still offered at exit.
_STORES: dict[str, tuple[ClientConfig, UserTokenStore]] = {}
_exit_hook_registered = False


def _forked() -> None:
    """In the child of ``os.fork``: the parent's unsaved sets are the parent's to offer (within its own turns), and
    the exit hook is registered anew when the child needs it (Airflow's task runner, a fork, clears the atexit
    handlers it inherits)."""
    global _guard, _exit_hook_registered
    _guard = threading.Lock()
    _UNSAVED.clear()
    _STORES.clear()
    _tasks.clear()
    _exit_hook_registered = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _where(store: UserTokenStore) -> str:
    key = getattr(store, "key", None)
    return f"Variable {key}" if key else "the user-token store"


def _register_exit_hook() -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(flush_all_at_exit)
        _exit_hook_registered = True


def watch(config: ClientConfig, store: UserTokenStore) -> None:
    """At exit, offer ``store`` any set of ``config``'s grant this process holds unsaved then (a client with a
    store calls this)."""
    with _guard:
        _STORES[grant_process.ProcessGrants.grant_key(config)] = (config, store)
        _register_exit_hook()


def keep_saving(grant: GrantInProcess, store: UserTokenStore, *, on_loop: bool) -> None:
    """Offer ``grant``'s unsaved set to ``store`` in the background until it is saved, and again at exit."""
    with _guard:
        _UNSAVED[id(grant)] = (grant, store)
        _register_exit_hook()
        if grant.saving_in_background:
            return
        grant.saving_in_background = True
    log.warning(
        "The user's new tokens could not be saved to %s yet: this process keeps them and offers them again every "
        "few seconds, on close and at exit.",
        _where(store),
    )
    if on_loop:
        task = asyncio.get_running_loop().create_task(_save_on_loop(grant, store))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    else:
        saver = threading.Thread(target=_save_in_thread, args=(grant, store), name="feishu-vc-unsaved", daemon=True)
        saver.start()


def _save_in_thread(grant: GrantInProcess, store: UserTokenStore) -> None:
    try:
        run_blocking(user_grant.save_in_background(grant), store)
    finally:
        grant.saving_in_background = False


async def _save_on_loop(grant: GrantInProcess, store: UserTokenStore) -> None:
    try:
        await run_async(user_grant.save_in_background(grant), store)
    finally:
        grant.saving_in_background = False


def flush(grant: GrantInProcess | None, store: UserTokenStore | None, where: str = "on close") -> bool:
    """Offer ``grant``'s unsaved set for up to :data:`~.user_grant.CLOSE_FLUSH_SECONDS`, blocking; log an error
    naming the re-grant command when it stays unsaved. True when nothing is left unsaved."""
    if grant is None or store is None or grant.unsaved is None:
        return True
    if run_blocking(user_grant.flush_unsaved(grant), store):
        return True
    log.error("%s", user_grant.unsaved_warning(grant, f"{_where(store)}, {where}"))
    return False


async def aflush(grant: GrantInProcess | None, store: UserTokenStore | None) -> bool:
    """:func:`flush` without blocking the event loop."""
    if grant is None or store is None or grant.unsaved is None:
        return True
    if await run_async(user_grant.flush_unsaved(grant), store):
        return True
    log.error("%s", user_grant.unsaved_warning(grant, f"{_where(store)}, on close"))
    return False


def flush_all_at_exit() -> None:
    """At the interpreter's exit: a last offer of every unsaved set (registered with :mod:`atexit`)."""
    with _guard:
        pending = dict(_UNSAVED)
        for config, store in _STORES.values():
            grant = grant_process.PROCESS.find(config)
            if grant is not None and grant.unsaved is not None:
                pending.setdefault(id(grant), (grant, store))
    for grant, store in pending.values():
        flush(grant, store, "at exit")


def run_blocking(flow: Flow[T], store: UserTokenStore) -> T:
    """Drive a store-only flow with blocking calls."""
    driving = Driving(flow)
    while (step := driving.next_step()) is not None:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
        elif isinstance(step, SharedUserTokens):
            driving.outcome = _perform(store, step)
    return driving.result  # type: ignore[return-value]


async def run_async(flow: Flow[T], store: UserTokenStore) -> T:
    """Drive a store-only flow with the store's async calls."""
    driving = Driving(flow)
    while (step := driving.next_step()) is not None:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, SharedUserTokens):
            try:
                use = getattr(store, f"a{step.action}")
                driving.outcome = await (use(step.value) if step.action.startswith("save") else use())
            except FeishuVCTokenStoreError as error:
                driving.outcome = error
    return driving.result  # type: ignore[return-value]


def _perform(store: UserTokenStore, step: SharedUserTokens) -> Any:
    try:
        use = getattr(store, step.action)
        return use(step.value) if step.action.startswith("save") else use()
    except FeishuVCTokenStoreError as error:
        return error
