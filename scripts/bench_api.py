"""Control-plane benchmarks on Postgres; prints medians over --repeats runs.

  POST /api/jobs        throughput (requests/s) and p99 latency over real HTTP
  dispatcher claims     jobs claimed per second (advisory lock + SKIP LOCKED, no /run)
  webhook applies       signed callbacks applied per second over real HTTP

Each repeat runs in a fresh schema of --database-url (created and dropped here).

  python scripts/bench_api.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api_stub import jobqueue, signing  # noqa: E402
from api_stub.auth import NewUser, create_user  # noqa: E402
from api_stub.db import Database  # noqa: E402
from api_stub.jobs import NewJob  # noqa: E402
from api_stub.submit import submit  # noqa: E402
from api_stub.testing.fake_runpod import sign_callback  # noqa: E402
from api_stub.testing.stack import Stack, start_stack  # noqa: E402

JOB = {"type": "bg_remove", "params": {}, "inputs": [{"url": "https://img.example/a.png"}]}


def in_threads(count: int, work: Callable[[int], None]) -> float:
    """Run work(i) in `count` threads started together; returns the wall time."""
    barrier = threading.Barrier(count + 1)

    def run(i: int) -> None:
        barrier.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def bench_post(
    stack: Stack, users: list[NewUser], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = total // concurrency

    def work(i: int) -> None:
        user = users[i % len(users)]
        mine = []
        with httpx.Client(
            base_url=stack.url, headers={"Authorization": f"Bearer {user.api_key}"}, timeout=30
        ) as http:
            for _ in range(per_thread):
                started = time.perf_counter()
                response = http.post("/api/jobs", json=JOB)
                mine.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text
        with lock:
            latencies.extend(mine)

    wall = in_threads(concurrency, work)
    return {
        "per_s": len(latencies) / wall,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
    }


def seed_jobs(db: Database, user: NewUser, count: int) -> list[str]:
    new = NewJob("bg_remove", {"v": 1}, [{"url": "https://img.example/a.png"}], 1, 60)
    ids: list[str] = []
    for start in range(0, count, 500):
        rows = submit(
            db,
            user=user.user,
            new_jobs=[new] * min(500, count - start),
            now=time.time(),
            idempotency_key=None,
            digest="",
            batch=True,
        ).rows
        ids.extend(row["id"] for row in rows)
    return ids


def bench_claims(db: Database, user: NewUser, count: int, dispatchers: int, batch: int) -> float:
    seed_jobs(db, user, count)
    claimed = [0] * dispatchers

    def work(i: int) -> None:
        while True:
            got = jobqueue.claim(
                db,
                owner=f"bench-{i}",
                limit=batch,
                max_inflight=10**9,
                lease_s=600,
                max_claims=5,
                now=time.time(),
            )
            if not got.jobs:
                return
            claimed[i] += len(got.jobs)

    wall = in_threads(dispatchers, work)
    assert sum(claimed) == count, (sum(claimed), count)
    return count / wall


def bench_webhooks(
    stack: Stack, db: Database, user: NewUser, count: int, concurrency: int
) -> float:
    ids = seed_jobs(db, user, count)
    with db.transaction() as tx:
        tx.execute(
            "UPDATE jobs SET status = 'RUNNING', running_at = ?, runpod_job_id = 'bench'"
            " WHERE status = 'QUEUED'",
            (time.time(),),
        )
    master = stack.settings.callback_master_key.get_secret_value()  # type: ignore[union-attr]
    calls = []
    for job_id in ids:
        body = json.dumps(
            {
                "job_id": job_id,
                "status": "SUCCEEDED",
                "outputs": [],
                "metrics": {"gpu_seconds": 1.0, "worker_version": "bench"},
            }
        ).encode()
        calls.append((body, signing.callback_key(master, job_id)))
    applied = [0] * concurrency

    def work(i: int) -> None:
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            for body, key in calls[i::concurrency]:
                headers = sign_callback(body, key, f"msg_{uuid.uuid4().hex}")
                response = http.post("/api/webhooks/runpod", content=body, headers=headers)
                assert response.json()["status"] == "applied", response.text
                applied[i] += 1

    wall = in_threads(concurrency, work)
    assert sum(applied) == count
    return count / wall


def one_round(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(args.database_url, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{separator}options={quote(f'-csearch_path={schema}')}"
    stack = start_stack(
        database_url=url,
        storage_dir=workdir,
        dispatchers=0,
        reconciler=False,
        settings={"db_pool_size": args.concurrency + 4},
    )
    try:
        db = stack.services.db
        users = [
            create_user(db, name=f"b{i}", credits_granted=10**9, now=time.time())
            for i in range(args.concurrency)
        ]
        post = bench_post(stack, users, args.posts, args.concurrency)
        with db.transaction() as tx:
            tx.execute("DELETE FROM credit_ledger WHERE job_id IS NOT NULL")
            tx.execute("DELETE FROM jobs")
        claims = bench_claims(db, users[0], args.claims, args.dispatchers, args.batch)
        with db.transaction() as tx:
            tx.execute("DELETE FROM credit_ledger WHERE job_id IS NOT NULL")
            tx.execute("DELETE FROM jobs")
        hooks = bench_webhooks(stack, db, users[0], args.webhooks, args.concurrency)
    finally:
        stack.stop()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    return {
        "post_per_s": post["per_s"],
        "post_p99_ms": post["p99_ms"],
        "claims_per_s": claims,
        "webhooks_per_s": hooks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a Postgres database in which bench schemas may be created",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP client threads")
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--dispatchers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--webhooks", type=int, default=400)
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("the benchmark runs on Postgres")

    rounds = []
    with tempfile.TemporaryDirectory(prefix="simplypng-bench-") as workdir:
        for _ in range(args.repeats):
            rounds.append(one_round(args, Path(workdir)))
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"medians over {args.repeats} runs (Postgres, {args.concurrency} HTTP clients)")
    print(
        f"POST /api/jobs      {median['post_per_s']:8.1f} req/s   p99 {median['post_p99_ms']:.1f} ms"
    )
    print(
        f"dispatcher claims   {median['claims_per_s']:8.1f} jobs/s  ({args.dispatchers} claimers, batch {args.batch})"
    )
    print(f"webhook applies     {median['webhooks_per_s']:8.1f} /s")
    print(
        f"ratios: claims/POST {median['claims_per_s'] / median['post_per_s']:.1f}x, "
        f"webhooks/POST {median['webhooks_per_s'] / median['post_per_s']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
