"""Consistency audit of jobs and credits (used by the load test and the integration tests).

Checks: every job is terminal; no job was charged twice; no failed or cancelled job was
charged; every succeeded job was charged once; no hold is left on a finished job; each
user's ledger sums to their balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api_stub.db import Database


@dataclass
class AuditReport:
    jobs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit(db: Database, *, require_terminal: bool = True) -> AuditReport:
    report = AuditReport()
    with db.transaction(write=False) as tx:
        for row in tx.all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
            report.by_status[row["status"]] = int(row["n"])
        report.jobs = sum(report.by_status.values())
        if require_terminal:
            for status in ("QUEUED", "DISPATCHING", "RUNNING"):
                if report.by_status.get(status):
                    report.problems.append(f"{report.by_status[status]} jobs still {status}")
        for row in tx.all(
            "SELECT job_id, kind, COUNT(*) AS n FROM credit_ledger WHERE job_id IS NOT NULL"
            " GROUP BY job_id, kind HAVING COUNT(*) > 1"
        ):
            report.problems.append(f"job {row['job_id']}: {row['n']} {row['kind']} entries")
        settlements = tx.all(
            "SELECT j.id, j.status, j.cost,"
            " SUM(CASE WHEN l.kind = 'hold' THEN 1 ELSE 0 END) AS holds,"
            " SUM(CASE WHEN l.kind = 'capture' THEN 1 ELSE 0 END) AS captures,"
            " SUM(CASE WHEN l.kind = 'release' THEN 1 ELSE 0 END) AS releases,"
            " SUM(CASE WHEN l.kind = 'capture' THEN -l.held_delta ELSE 0 END) AS charged"
            " FROM jobs j LEFT JOIN credit_ledger l ON l.job_id = j.id"
            " GROUP BY j.id, j.status, j.cost"
        )
        for row in settlements:
            holds, captures = int(row["holds"]), int(row["captures"])
            releases = int(row["releases"])
            job = f"job {row['id']} ({row['status']})"
            if holds != 1:
                report.problems.append(f"{job}: {holds} holds")
            if row["status"] == "SUCCEEDED" and (captures, releases) != (1, 0):
                report.problems.append(f"{job}: {captures} captures, {releases} releases")
            if row["status"] == "SUCCEEDED" and int(row["charged"]) != int(row["cost"]):
                report.problems.append(f"{job}: charged {row['charged']}, cost {row['cost']}")
            if row["status"] in ("FAILED", "CANCELLED") and (captures, releases) != (0, 1):
                report.problems.append(f"{job}: {captures} captures, {releases} releases")
            if row["status"] in ("QUEUED", "DISPATCHING", "RUNNING") and captures + releases:
                report.problems.append(f"{job}: settled before finishing")
        for row in tx.all(
            "SELECT b.user_id, b.available, b.held,"
            " COALESCE(SUM(l.delta), 0) AS delta, COALESCE(SUM(l.held_delta), 0) AS held_delta"
            " FROM balances b LEFT JOIN credit_ledger l ON l.user_id = b.user_id"
            " GROUP BY b.user_id, b.available, b.held"
        ):
            if int(row["available"]) < 0 or int(row["held"]) < 0:
                report.problems.append(f"user {row['user_id']}: negative balance")
            if (int(row["delta"]), int(row["held_delta"])) != (
                int(row["available"]),
                int(row["held"]),
            ):
                report.problems.append(
                    f"user {row['user_id']}: ledger ({row['delta']}, {row['held_delta']})"
                    f" != balance ({row['available']}, {row['held']})"
                )
    return report
