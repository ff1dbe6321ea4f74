"""What the processes of a deployment share about a user's grant: its tokens (:class:`StoredUserTokens`), the lease
that lets one process at a time refresh them (:class:`RefreshLease`), and the store that keeps both
(:class:`UserTokenStore`). The rules that use them are :mod:`.user_grant`'s.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

#: How long a lease holds, measured by each reader with its own monotonic clock from the moment it first saw that
#: lease (never by comparing wall clocks of two hosts): the settle, the refresh request and a slow save fit in it.
LEASE_SECONDS = 120.0


@dataclass(frozen=True)
class StoredUserTokens:
    """The user tokens one deployment shares: the current access token and the current (single-use) refresh token.
    Times are wall-clock epoch seconds, so that every process on every machine reads them alike. ``generation``
    counts the refreshes since the grant began; ``grant`` is the grant's first refresh token, which names the store
    (a connection's ``refresh_token`` extra) and is spent."""

    access_token: str = field(repr=False)
    access_expires_at: float
    access_lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    generation: int = 0
    grant: str | None = field(default=None, repr=False)

    def seconds_left(self) -> float:
        return self.access_expires_at - time.time()

    def secrets(self) -> list[str]:
        return [s for s in (self.access_token, self.refresh_token, self.grant) if s]

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at,
                "access_lifetime": self.access_lifetime,
                "refresh_token": self.refresh_token,
                "refresh_expires_at": self.refresh_expires_at,
                "generation": self.generation,
                "grant": self.grant,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> StoredUserTokens | None:
        """What a store holds, or None when it holds nothing usable (never raises on a damaged value)."""
        try:
            data = json.loads(text or "")
            generation = data.get("generation", 0)
            if isinstance(generation, bool) or not isinstance(generation, int):
                raise TypeError("generation")
            return cls(
                str(data["access_token"]),
                float(data["access_expires_at"]),
                float(data["access_lifetime"]),
                data.get("refresh_token") or None,
                float(data["refresh_expires_at"]) if data.get("refresh_expires_at") else None,
                generation,
                data.get("grant") or None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@dataclass(frozen=True)
class RefreshLease:
    """Which process may refresh a grant now. ``holder`` is ``<process id>-<nonce>``, new for every claim, so that
    two leases are told apart by value alone; ``until`` is the writer's wall clock plus :data:`LEASE_SECONDS`, for
    people and older releases only (no reader of this release compares it with its own clock); ``released`` marks
    a lease its holder gave back."""

    holder: str
    until: float
    released: bool = False

    @classmethod
    def new(cls, process_id: str) -> RefreshLease:
        return cls(f"{process_id}-{uuid.uuid4().hex[:12]}", time.time() + LEASE_SECONDS)

    @property
    def process_id(self) -> str:
        return self.holder.rsplit("-", 1)[0]

    def given_back(self) -> RefreshLease:
        """The same lease, released (an older release reads ``until`` 0 as released too)."""
        return RefreshLease(self.holder, 0.0, released=True)

    def to_json(self) -> str:
        return json.dumps({"holder": self.holder, "until": self.until, "released": self.released})

    @classmethod
    def from_json(cls, text: str | None) -> RefreshLease | None:
        try:
            data = json.loads(text or "")
            released = data.get("released", False)
            return cls(str(data["holder"]), float(data["until"]), released is True or float(data["until"]) == 0.0)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class UserTokenStore(Protocol):
    """Where the processes of one deployment share a grant's user tokens and its refresh lease (the hook keeps
    them in Airflow Variables). Reads answer None when nothing is stored; a read or write that cannot reach the
    store raises ``FeishuVCTokenStoreError``. The async methods must not block the event loop."""

    def load(self) -> StoredUserTokens | None: ...

    def save(self, tokens: StoredUserTokens) -> None: ...

    def load_lease(self) -> RefreshLease | None: ...

    def save_lease(self, lease: RefreshLease) -> None: ...

    async def aload(self) -> StoredUserTokens | None: ...

    async def asave(self, tokens: StoredUserTokens) -> None: ...

    async def aload_lease(self) -> RefreshLease | None: ...

    async def asave_lease(self, lease: RefreshLease) -> None: ...
