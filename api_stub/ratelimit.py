"""Per-user token bucket stored in the database, so every API process shares one limit.

One statement refills and takes a token: INSERT ... ON CONFLICT DO UPDATE ... WHERE enough
tokens ... RETURNING. A concurrent taker waits on the row lock and re-evaluates, so the bucket
never hands out more than it holds.

Clock readings reach the row out of order (a taker may read the clock, then wait for a
connection or the lock while a later reading commits first), so `updated_at` only ever moves
forward and a take is credited only for the time past it:

    refill = per_s * max(0, now - updated_at);  updated_at = max(updated_at, now)

Bound: every credited second is an increase of `updated_at`, which starts at the first admitted
reading and never passes the latest one, so over any set of takes, in any arrival order,
admitted * cost <= capacity + per_s * (latest reading - earliest reading). A stale reading is
never credited twice; at worst it is refused a refill it would have got a moment later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from api_stub.db import Database


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    remaining: float = 0.0


def take(
    db: Database,
    user_id: str,
    *,
    clock: Callable[[], float],
    capacity: float,
    per_s: float,
    cost: float = 1.0,
) -> Decision:
    """Take `cost` tokens from the user's bucket, refilled at `per_s` up to `capacity`.

    `clock` is read once the transaction has begun (on SQLite, after the write lock), so the
    reading is as fresh as it can be; correctness does not depend on it (see the module doc).
    """
    if cost > capacity:
        raise ValueError("cost exceeds the bucket capacity: it could never be allowed")
    least = "LEAST" if db.dialect == "postgres" else "MIN"
    greatest = "GREATEST" if db.dialect == "postgres" else "MAX"
    # Tokens after refill; only time past updated_at counts (a stale reading refills nothing).
    refilled = (
        f"{least}(:capacity, rate_buckets.tokens"
        f" + {greatest}(0, :now - rate_buckets.updated_at) * :per_s)"
    )
    with db.transaction() as tx:
        now = clock()
        row = tx.one(
            "INSERT INTO rate_buckets (user_id, tokens, updated_at)"
            " VALUES (:user_id, :capacity - :cost, :now)"
            f" ON CONFLICT (user_id) DO UPDATE SET tokens = {refilled} - :cost,"
            f" updated_at = {greatest}(rate_buckets.updated_at, :now)"
            f" WHERE {refilled} >= :cost"
            " RETURNING tokens",
            {"user_id": user_id, "capacity": capacity, "cost": cost, "now": now, "per_s": per_s},
        )
        if row is not None:
            return Decision(True, 0, float(row["tokens"]))
        current = tx.one(
            "SELECT tokens, updated_at FROM rate_buckets WHERE user_id = ?", (user_id,)
        )
    tokens = 0.0
    if current is not None:
        elapsed = max(0.0, now - float(current["updated_at"]))
        tokens = min(capacity, float(current["tokens"]) + elapsed * per_s)
    wait = max(0.0, (cost - tokens) / per_s)
    return Decision(False, max(1, math.ceil(wait)), tokens)
