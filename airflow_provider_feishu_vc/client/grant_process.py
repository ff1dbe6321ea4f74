"""What one process knows of each user grant beyond the shared store (:mod:`.user_grant` holds the rules): whose turn
it is among the process's callers, the lease it holds and the one it watches, the newest tokens it knows, the set
it could not save, and the refresh tokens Feishu already answered it for. A child of ``os.fork`` starts with none of
its parent's."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.stored_tokens import RefreshLease, StoredUserTokens


class GrantInProcess:
    """What one process knows of one grant beyond the store, shared by all its callers (threads and event loops):
    whose turn it is, the lease it holds, the lease it watches, the newest tokens it knows, the set it could not
    save yet, and the refresh tokens Feishu already answered it for."""

    def __init__(self, process_id: str) -> None:
        self.process_id = process_id
        self._guard = threading.Lock()
        self._turn: object | None = None
        #: The lease this process wrote last, and when it began writing it (monotonic).
        self.lease: RefreshLease | None = None
        self.lease_since = 0.0
        self._watched: RefreshLease | None = None
        self._watched_since = 0.0
        #: The newest set this process knows (saved or not), and the one only it knows (its saves failed).
        self.latest: StoredUserTokens | None = None
        self.unsaved: StoredUserTokens | None = None
        #: Whether a driver is offering ``unsaved`` in the background.
        self.saving_in_background = False
        self._answered: set[str] = set()

    def take_turn(self) -> object | None:
        """A turn at fetching this grant's tokens, or None while another caller of this process has it."""
        with self._guard:
            if self._turn is not None:
                return None
            self._turn = object()
            return self._turn

    def end_turn(self, turn: object) -> None:
        with self._guard:
            if self._turn is turn:
                self._turn = None

    def age(self, lease: RefreshLease) -> float:
        """Seconds since this process first saw ``lease`` (by value), on its own monotonic clock."""
        now = time.monotonic()
        with self._guard:
            if lease != self._watched:
                self._watched, self._watched_since = lease, now
            return now - self._watched_since

    def know(self, tokens: StoredUserTokens | None) -> None:
        if tokens is not None and (self.latest is None or tokens.generation >= self.latest.generation):
            self.latest = tokens

    def saved(self, tokens: StoredUserTokens) -> None:
        with self._guard:
            if self.unsaved is not None and self.unsaved.generation <= tokens.generation:
                self.unsaved = None

    def answered(self, refresh_token: str) -> None:
        """Feishu answered a refresh with ``refresh_token``: it is spent, and never sent again by this process."""
        self._answered.add(hashlib.sha256(refresh_token.encode()).hexdigest())

    def was_answered(self, refresh_token: str) -> bool:
        return hashlib.sha256(refresh_token.encode()).hexdigest() in self._answered


class ProcessGrants:
    """This process's :class:`GrantInProcess` of every grant it uses, and its id in refresh leases."""

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex[:12]
        self._guard = threading.Lock()
        self._grants: dict[str, GrantInProcess] = {}

    @staticmethod
    def grant_key(config: ClientConfig) -> str:
        """Which grant ``config`` acts with (the app and the grant's first token), as a digest."""
        seed = "\n".join((*config.app_key, config.refresh_token or config.user_access_token or ""))
        return hashlib.sha256(seed.encode()).hexdigest()

    def of(self, config: ClientConfig) -> GrantInProcess:
        with self._guard:
            return self._grants.setdefault(self.grant_key(config), GrantInProcess(self.process_id))

    def find(self, config: ClientConfig) -> GrantInProcess | None:
        with self._guard:
            return self._grants.get(self.grant_key(config))

    def forked(self) -> None:
        """In the child of ``os.fork``: a name of its own in leases, and none of the parent's grant state. Kept,
        the child would take a live lease of its parent or a sibling for its own (while that holder's save is
        failing: a second refresh of the same token), wait minutes for a turn a parent's thread held at the fork
        (or for ever on a lock it held), and offer the parent's unsaved set outside the parent's turn."""
        self.process_id = uuid.uuid4().hex[:12]
        self._guard = threading.Lock()
        self._grants = {}


#: The grants of this process (a simulation of many processes swaps it per process).
PROCESS = ProcessGrants()


def _forked() -> None:
    PROCESS.forked()


if hasattr(os, "register_at_fork"):  # a task's multiprocessing pool, a worker forking its task runner
    os.register_at_fork(after_in_child=_forked)
