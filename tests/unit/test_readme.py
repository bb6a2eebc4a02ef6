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
