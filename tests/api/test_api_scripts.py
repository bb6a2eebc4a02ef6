"""scripts/loadtest.py and scripts/bench_api.py run end to end (tiny sizes; no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_loadtest_runs_the_loop_and_audits(db_url: str) -> None:
    done = _script(
        "loadtest.py",
        "--users",
        "3",
        "--jobs-per-user",
        "2",
        "--fake-delay-s",
        "0.02",
        "--database-url",
        db_url,
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["jobs"] == 6 and summary["success_rate"] == 1.0
    assert summary["audit"] == {"ok": True, "by_status": {"SUCCEEDED": 6}, "problems": []}
    assert summary["queue_latency_s"]["p95"] >= summary["queue_latency_s"]["p50"] >= 0
    figures = [*summary["queue_latency_s"].values(), *summary["e2e_latency_s"].values()]
    for seconds in [*figures, summary["wall_s"]]:
        assert seconds == round(seconds, 2)  # printed to the hundredth of a second
    # Every job succeeded, so no dispatch was a stray to cancel on Runpod.
    assert "stray run" not in done.stderr and "lost during dispatch" not in done.stderr


@pytest.mark.postgres
def test_bench_api_prints_medians(pg_url: str) -> None:
    base = pg_url.split("?", 1)[0]
    done = _script(
        "bench_api.py",
        "--database-url",
        base,
        "--repeats",
        "1",
        "--posts",
        "16",
        "--claims",
        "40",
        "--webhooks",
        "16",
        "--concurrency",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "POST /api/jobs" in done.stdout and "webhook applies" in done.stdout
