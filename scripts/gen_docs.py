"""Regenerate the README's generated tables (env vars, error codes) from the code.

`python scripts/gen_docs.py` rewrites the blocks between `<!-- gen:NAME -->` and
`<!-- /gen:NAME -->`; `--check` exits 1 when the README is stale (a test runs it).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _default(field: object) -> str:
    default = getattr(field, "default", None)
    factory = getattr(field, "default_factory", None)
    if factory is not None:
        default = factory()
        if default == sys.executable:
            return "the worker's Python"
    if isinstance(default, list):
        default = ",".join(map(str, default))
    if isinstance(default, Path):
        default = str(default.relative_to(ROOT)) if default.is_relative_to(ROOT) else str(default)
    if default is None or default == "":
        return "—"
    return f"`{default}`"


def env_table(model: type[BaseModel]) -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        text = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name.upper()}` | {_default(field)} | {text} |")
    return "\n".join(rows)


def error_table() -> str:
    from handler.errors import ERROR_DESCRIPTIONS

    rows = ["| Code | Meaning |", "|---|---|"]
    rows += [f"| `{code.value}` | {text} |" for code, text in ERROR_DESCRIPTIONS.items()]
    return "\n".join(rows)


def blocks() -> dict[str, str]:
    from handler.settings import Settings

    out = {"worker-env": env_table(Settings), "error-codes": error_table()}
    try:
        from api_stub.settings import ApiSettings
    except ImportError:
        return out
    out["api-env"] = env_table(ApiSettings)
    return out


def _fill(body: str, match: re.Match[str]) -> str:
    return match.group(1) + body + "\n" + match.group(2)


def render(readme: str) -> str:
    for name, body in blocks().items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n).*?(<!-- /gen:{name} -->)", re.S)
        readme = pattern.sub(functools.partial(_fill, body), readme)
    return readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md generated tables are stale: run python scripts/gen_docs.py")
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
