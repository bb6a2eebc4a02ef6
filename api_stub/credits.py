"""Credits: a balance row per user plus an append-only ledger.

- hold: at job creation, a conditional UPDATE (`available >= cost`) moves credits from
  available to held. At READ COMMITTED a waiting UPDATE re-checks its WHERE clause against the
  committed row, so concurrent holds never overdraw (and a CHECK constraint backs that up).
- capture (success) or release (failure, cancel): exactly one per job, enforced by a partial
  unique index on the ledger; the balance moves only when the ledger row was inserted.
The ledger sums to the balances: sum(delta) == available and sum(held_delta) == held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from api_stub.db import Tx

Settlement = Literal["capture", "release"]


@dataclass(frozen=True)
class Balance:
    available: int
    held: int


def grant(tx: Tx, user_id: str, amount: int, *, now: float, note: str = "") -> None:
    if amount <= 0:
        raise ValueError("grant amount must be positive")
    tx.execute(
        "UPDATE balances SET available = available + ?, updated_at = ? WHERE user_id = ?",
        (amount, now, user_id),
    )
    _ledger(tx, user_id, None, "grant", amount, 0, now, note)


def hold(tx: Tx, user_id: str, holds: list[tuple[str, int]], *, now: float) -> bool:
    """Hold the total of (job_id, cost) pairs in one conditional UPDATE; False if short.

    The jobs must already exist (the ledger references them).
    """
    total = sum(cost for _, cost in holds)
    moved = tx.execute(
        "UPDATE balances SET available = available - ?, held = held + ?, updated_at = ?"
        " WHERE user_id = ? AND available >= ?",
        (total, total, now, user_id, total),
    )
    if moved != 1:
        return False
    for job_id, cost in holds:
        _ledger(tx, user_id, job_id, "hold", -cost, cost, now, None)
    return True


def settle(tx: Tx, job_id: str, kind: Settlement, *, now: float) -> int | None:
    """Capture or release a job's hold, once. Returns the amount, or None if already settled.

    ON CONFLICT DO NOTHING lets the unique index decide, without aborting the surrounding
    Postgres transaction on a duplicate.
    """
    held = tx.one(
        "SELECT user_id, held_delta FROM credit_ledger WHERE job_id = ? AND kind = 'hold'",
        (job_id,),
    )
    if held is None:
        return None
    amount = int(held["held_delta"])
    returned = amount if kind == "release" else 0
    inserted = tx.one(
        "INSERT INTO credit_ledger (id, user_id, job_id, kind, delta, held_delta, note, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING RETURNING id",
        (str(uuid.uuid4()), held["user_id"], job_id, kind, returned, -amount, now),
    )
    if inserted is None:
        return None
    tx.execute(
        "UPDATE balances SET held = held - ?, available = available + ?, updated_at = ?"
        " WHERE user_id = ?",
        (amount, returned, now, held["user_id"]),
    )
    return amount


def balance(tx: Tx, user_id: str) -> Balance | None:
    row = tx.one("SELECT available, held FROM balances WHERE user_id = ?", (user_id,))
    return None if row is None else Balance(int(row["available"]), int(row["held"]))


def _ledger(
    tx: Tx,
    user_id: str,
    job_id: str | None,
    kind: str,
    delta: int,
    held_delta: int,
    now: float,
    note: str | None,
) -> None:
    tx.execute(
        "INSERT INTO credit_ledger (id, user_id, job_id, kind, delta, held_delta, note, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (str(uuid.uuid4()), user_id, job_id, kind, delta, held_delta, note, now),
    )
