"""Per-user token bucket stored in the database, so every API process shares one limit.

One statement refills and takes a token: INSERT ... ON CONFLICT DO UPDATE ... WHERE enough
tokens ... RETURNING. A concurrent taker waits on the row lock and re-evaluates, so the bucket
never hands out more than it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from api_stub.db import Database


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    remaining: float = 0.0


def take(
    db: Database, user_id: str, *, now: float, capacity: float, per_s: float, cost: float = 1.0
) -> Decision:
    """Take `cost` tokens from the user's bucket, refilled at `per_s` up to `capacity`."""
    if cost > capacity:
        raise ValueError("cost exceeds the bucket capacity: it could never be allowed")
    least = "LEAST" if db.dialect == "postgres" else "MIN"
    greatest = "GREATEST" if db.dialect == "postgres" else "MAX"
    # Tokens after refill; a clock that steps backwards refills nothing instead of draining.
    refilled = f"{least}(?, rate_buckets.tokens + {greatest}(0, ? - rate_buckets.updated_at) * ?)"
    with db.transaction() as tx:
        row = tx.one(
            "INSERT INTO rate_buckets (user_id, tokens, updated_at) VALUES (?, ?, ?)"
            f" ON CONFLICT (user_id) DO UPDATE SET tokens = {refilled} - ?, updated_at = ?"
            f" WHERE {refilled} >= ?"
            " RETURNING tokens",
            (
                user_id,
                capacity - cost,
                now,
                capacity,
                now,
                per_s,
                cost,
                now,
                capacity,
                now,
                per_s,
                cost,
            ),
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
