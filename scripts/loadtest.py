"""Load test: N concurrent users submit jobs through the full loop, then the books are audited.

Modes
  default          the control plane in this process (API, dispatchers, reconciler) against a
                   fake Runpod endpoint whose fake worker fetches inputs, uploads outputs and
                   posts signed callbacks. SQLite in a temp dir unless --database-url is given.
  --runpod-url U   the same in-process control plane against a real endpoint: a Runpod
                   endpoint (https://api.runpod.ai/v2/<id>, with RUNPOD_API_KEY) or a local
                   worker (`python -m handler --rp_serve_api --rp_api_port P`; add
                   --local-api).
  --api-url U      an already running stack; needs --database-url to create users and audit.
  --stack real-worker
                   the full loop with the REAL worker: moto's S3 server (STORAGE=s3), the
                   ComfyUI test double running the node pack with tiny models, and
                   `python -m handler --rp_serve_api` as a process (tests/fakes/full_stack.py),
                   behind the in-process control plane.
  --local-api      with --runpod-url: the endpoint is runpod's local API (--rp_serve_api), which
                   runs a job inside POST /status; sets the matching control-plane settings.

Reports the success rate and queue / end-to-end latency at p50 and p95 (from the API's own
timings), then audits: every job terminal, nothing charged twice or for a failed job, the
ledger sums to the balances. Exits 1 when the audit fails or the success rate is too low.

  python scripts/loadtest.py --users 10            # CI
  python scripts/loadtest.py --users 10 --stack real-worker --type jpeg_to_png
  python scripts/loadtest.py --users 50 --jobs-per-user 4 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api_stub.audit import audit  # noqa: E402
from api_stub.auth import create_user  # noqa: E402
from api_stub.db import Database  # noqa: E402
from api_stub.db.migrate import migrate  # noqa: E402
from api_stub.testing.fake_runpod import FakeRunpod  # noqa: E402
from api_stub.testing.stack import Stack, start_stack  # noqa: E402

if TYPE_CHECKING:
    from tests.fakes.full_stack import RealWorker

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass
class Outcome:
    job_id: str
    status: str = "UNKNOWN"
    queue_s: float | None = None
    total_s: float | None = None
    error: str | None = None


@dataclass
class UserRun:
    outcomes: list[Outcome] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    throttled: int = 0


def make_png(size: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def run_user(
    api_url: str,
    api_key: str,
    *,
    jobs: int,
    body: dict[str, Any],
    png: bytes,
    input_url: str | None,
    deadline: float,
) -> UserRun:
    run = UserRun()
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as http:
        if input_url is not None:
            inputs = [{"url": input_url}]
        else:
            grant = http.post("/api/uploads", json={"content_type": "image/png"})
            grant.raise_for_status()
            form = grant.json()
            posted = httpx.post(form["url"], data=form["fields"], files={"file": ("in.png", png)})
            posted.raise_for_status()
            inputs = [form["input"]]
        ids = []
        for _ in range(jobs):
            while True:
                response = http.post("/api/jobs", json={**body, "inputs": inputs})
                if response.status_code != 429:
                    break
                run.throttled += 1
                time.sleep(float(response.headers.get("retry-after", "1")))
            if response.status_code != 201:
                run.rejected.append(f"{response.status_code}: {response.text[:200]}")
                continue
            ids.append(response.json()["id"])
        pending = {job_id: Outcome(job_id) for job_id in ids}
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                view = http.get(f"/api/jobs/{job_id}").json()
                if view["status"] in TERMINAL:
                    outcome = pending.pop(job_id)
                    outcome.status = view["status"]
                    outcome.queue_s = view["timings"]["queue_s"]
                    outcome.total_s = view["timings"]["total_s"]
                    if view.get("error"):
                        outcome.error = view["error"]["code"]
                    run.outcomes.append(outcome)
            time.sleep(0.1)
        run.outcomes.extend(pending.values())  # still UNKNOWN at the deadline
    return run


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile in seconds, to 2 decimals (timings finer than that are noise)."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def summarise(runs: list[UserRun], wall_s: float) -> dict[str, Any]:
    outcomes = [o for run in runs for o in run.outcomes]
    succeeded = [o for o in outcomes if o.status == "SUCCEEDED"]
    queue = [o.queue_s for o in outcomes if o.queue_s is not None]
    total = [o.total_s for o in succeeded if o.total_s is not None]
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.error:
            errors[outcome.error] = errors.get(outcome.error, 0) + 1
    return {
        "jobs": len(outcomes),
        "succeeded": len(succeeded),
        "success_rate": round(len(succeeded) / len(outcomes), 4) if outcomes else 0.0,
        "rejected": sum(len(run.rejected) for run in runs),
        "throttled_429": sum(run.throttled for run in runs),
        "errors": errors,
        "queue_latency_s": {"p50": percentile(queue, 50), "p95": percentile(queue, 95)},
        "e2e_latency_s": {"p50": percentile(total, 50), "p95": percentile(total, 95)},
        "wall_s": round(wall_s, 2),
        "jobs_per_s": round(len(outcomes) / wall_s, 2) if wall_s else None,
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def parse_sets(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants name=value, got {pair!r}")
        values[name.strip().lower()] = value
    return values


def start_real_worker(exits: contextlib.ExitStack, workdir: Path, job_type: str) -> RealWorker:
    """moto + the ComfyUI double + `python -m handler --rp_serve_api`, stopped by `exits`."""
    import logging

    from tests.fakes.full_stack import real_worker

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    return exits.enter_context(real_worker(workdir, types=(job_type,)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--jobs-per-user", type=int, default=3)
    parser.add_argument("--type", default="bg_remove")
    parser.add_argument("--params", default="{}", help="JSON params for every job")
    parser.add_argument("--database-url", help="default: SQLite in a temp dir")
    parser.add_argument("--dispatchers", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=16)
    parser.add_argument("--fake-delay-s", type=float, default=0.2, help="fake worker job time")
    parser.add_argument("--runpod-url", help="a real endpoint instead of the fake one")
    parser.add_argument(
        "--stack",
        choices=("fake", "real-worker"),
        default="fake",
        help="real-worker: start moto, the ComfyUI double and the real worker process",
    )
    parser.add_argument(
        "--local-api", action="store_true", help="--runpod-url is a `--rp_serve_api` worker"
    )
    parser.add_argument("--api-url", help="an already running API (with --database-url)")
    parser.add_argument("--input-url", help="use this input URL instead of uploading an image")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--min-success", type=float, default=1.0)
    parser.add_argument("--set", action="append", default=[], help="extra setting name=value")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    if args.api_url and not args.database_url:
        parser.error("--api-url needs --database-url (users are created and audited in the DB)")
    if args.stack == "real-worker" and (args.api_url or args.runpod_url):
        parser.error("--stack real-worker starts its own worker: drop --api-url / --runpod-url")
    if args.local_api and not args.runpod_url:
        parser.error("--local-api describes the endpoint at --runpod-url")
    body = {"type": args.type, "params": json.loads(args.params)}
    workdir = tempfile.TemporaryDirectory(prefix="simplypng-load-")
    database_url = args.database_url or f"sqlite:///{Path(workdir.name) / 'load.db'}"
    stack: Stack | None = None
    fake: FakeRunpod | None = None
    real = contextlib.ExitStack()
    runpod_url = args.runpod_url
    extra: dict[str, Any] = {}
    if args.stack == "real-worker" or args.local_api:
        from tests.fakes.full_stack import LOCAL_API_SETTINGS

        extra.update(LOCAL_API_SETTINGS)
    real_stack: RealWorker | None = None
    try:
        if args.stack == "real-worker":
            real_stack = start_real_worker(real, Path(workdir.name) / "worker", args.type)
            runpod_url = real_stack.runpod_url
            extra.update(real_stack.storage_settings(real_stack.s3.create_bucket()))
        if args.api_url:
            db = Database(database_url)
            migrate(db)
            api_url = args.api_url
        else:
            if runpod_url is None:
                fake = FakeRunpod(delay_s=args.fake_delay_s)
            stack = start_stack(
                database_url=database_url,
                storage_dir=Path(workdir.name) / "storage",
                dispatchers=args.dispatchers,
                fake=fake,
                runpod_url=runpod_url,
                settings={"max_inflight": args.max_inflight, **extra, **parse_sets(args.set)},
            )
            db = stack.services.db
            api_url = stack.url
    except BaseException:
        real.close()
        workdir.cleanup()
        raise
    try:
        png = make_png(args.image_size)
        keys = [
            create_user(
                db, name=f"load-{i}", credits_granted=args.jobs_per_user * 10, now=time.time()
            ).api_key
            for i in range(args.users)
        ]
        runs: list[UserRun] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.timeout_s

        def worker(key: str) -> Callable[[], None]:
            def go() -> None:
                result = run_user(
                    api_url,
                    key,
                    jobs=args.jobs_per_user,
                    body=body,
                    png=png,
                    input_url=args.input_url,
                    deadline=deadline,
                )
                with lock:
                    runs.append(result)

            return go

        started = time.monotonic()
        threads = [threading.Thread(target=worker(key)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        summary = summarise(runs, wall)
        summary["stack"] = (
            "api-url" if args.api_url else "runpod-url" if args.runpod_url else args.stack
        )
        summary["database"] = "postgres" if db.dialect == "postgres" else "sqlite"
        if stack is not None:
            # Let late duplicate deliveries land before auditing.
            time.sleep(0.5)
        report = audit(db)
        summary["audit"] = {
            "ok": report.ok,
            "by_status": report.by_status,
            "problems": report.problems[:20],
        }
        if fake is not None:
            summary["fake_max_concurrent"] = fake.max_running
        if real_stack is not None and (not report.ok or summary["succeeded"] < summary["jobs"]):
            print(real_stack.logs(), file=sys.stderr)  # the worker's side of what went wrong
    finally:
        if stack is not None:
            stack.stop()
        elif args.api_url:
            db.close()
        real.close()
        workdir.cleanup()

    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        q, e = summary["queue_latency_s"], summary["e2e_latency_s"]
        print(
            f"jobs {summary['jobs']}  succeeded {summary['succeeded']}  "
            f"success rate {summary['success_rate']:.2%}  ({summary['jobs_per_s']} jobs/s)"
        )
        print(f"queue latency  p50 {_seconds(q['p50'])}  p95 {_seconds(q['p95'])}")
        print(f"e2e latency    p50 {_seconds(e['p50'])}  p95 {_seconds(e['p95'])}")
        print(f"wall time      {_seconds(summary['wall_s'])}")
        print(
            f"429 retries {summary['throttled_429']}  rejected {summary['rejected']}  "
            f"errors {summary['errors']}"
        )
        print(f"stack {summary['stack']}  database {summary['database']}")
        print(f"audit {'OK' if report.ok else 'FAILED'} {summary['audit']['by_status']}")
        for problem in summary["audit"]["problems"]:
            print(f"  - {problem}")
    ok = report.ok and summary["success_rate"] >= args.min_success and summary["rejected"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
