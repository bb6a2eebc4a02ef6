"""Users and API keys. Keys are random 256-bit tokens; only their SHA-256 is stored.

A fast hash is enough here: a key has 256 bits of entropy, so there is nothing to brute-force,
and the lookup by hash needs no comparison of secrets in application code.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from api_stub import credits
from api_stub.db import Database, Tx

KEY_PREFIX = "sp_"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    priority: int


@dataclass(frozen=True)
class NewUser:
    user: User
    api_key: str


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def create_user(
    db: Database, *, name: str, credits_granted: int, now: float, priority: int = 0
) -> NewUser:
    """Create a user with a balance and one API key; the key is returned once, never stored."""
    user = User(id=str(uuid.uuid4()), name=name, priority=priority)
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO users (id, name, priority, created_at) VALUES (?, ?, ?, ?)",
            (user.id, name, priority, now),
        )
        tx.execute(
            "INSERT INTO balances (user_id, available, held, updated_at) VALUES (?, 0, 0, ?)",
            (user.id, now),
        )
        if credits_granted:
            credits.grant(tx, user.id, credits_granted, now=now, note="initial grant")
        key = _add_key(tx, user.id, now)
    return NewUser(user=user, api_key=key)


def add_api_key(db: Database, user_id: str, *, now: float) -> str:
    with db.transaction() as tx:
        return _add_key(tx, user_id, now)


def _add_key(tx: Tx, user_id: str, now: float) -> str:
    key = new_api_key()
    tx.execute(
        "INSERT INTO api_keys (key_hash, user_id, prefix, created_at) VALUES (?, ?, ?, ?)",
        (hash_key(key), user_id, key[:10], now),
    )
    return key


def authenticate(db: Database, api_key: str) -> User | None:
    """The user owning a live key, or None."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    with db.transaction(write=False) as tx:
        row = tx.one(
            "SELECT u.id, u.name, u.priority FROM api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (hash_key(api_key),),
        )
    return None if row is None else User(id=row["id"], name=row["name"], priority=row["priority"])


def revoke_key(db: Database, api_key: str, *, now: float) -> bool:
    with db.transaction() as tx:
        return (
            tx.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_hash = ? AND revoked_at IS NULL",
                (now, hash_key(api_key)),
            )
            == 1
        )
