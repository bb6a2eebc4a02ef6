"""The README is the user's contract: its generated tables are current and CI runs its commands."""

import re
import subprocess
import sys

from handler.settings import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_generated_tables_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block is not None and README.index("```bash") < 40
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for command in commands[:2]:
        assert (REPO_ROOT / command.split()[1]).exists()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_every_worker_setting_and_error_code_is_documented() -> None:
    from handler.errors import ErrorCode
    from handler.settings import Settings

    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in README
    for code in ErrorCode:
        assert f"`{code.value}`" in README


def test_the_callback_key_formula_in_the_readme_is_the_one_the_code_uses() -> None:
    import hashlib
    import hmac

    from api_stub.signing import callback_key

    master, job_id = "m" * 40, "6f1c0a4e-8f4e-4b8a-9d57-1d3f2b7c9a10"
    want = hmac.new(master.encode(), b"callback\x00" + job_id.encode(), hashlib.sha256).digest()
    assert callback_key(master, job_id) == want
    assert 'HMAC-SHA256(master, "callback\\0" + job_id)' in README
    assert "HMAC(master, job_id)" not in README


def test_every_prometheus_metric_is_named_in_the_readme() -> None:
    from api_stub.metrics import Metrics

    metrics = Metrics()
    metrics.add_db_gauges(lambda: {"QUEUED": 1}, lambda: 1.0)
    exposed = {
        line.split()[2]
        for line in metrics.render().decode().splitlines()
        if line.startswith("# TYPE") and not line.split()[2].endswith("_created")
    }
    assert len(exposed) == 12
    section = README[README.index("## Monitoring") :]
    for name in exposed:
        assert f"`{name}`" in section, name
