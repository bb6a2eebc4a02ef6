"""A before/after HTML contact sheet: one row per job, input beside output.

Images are linked by relative paths (the sheet sits beside the samples/ and outputs/ folders),
shown over a checkerboard so transparency is visible. Each row can carry a badge above its
output saying plainly whether a real model made it (provenance.py decides which). Every time
shown says what it covers (a tooltip, and a legend under the table), and each row shows what
of the control plane's "run" the worker's stages do not account for, so the numbers
reconcile. Pure rendering: no I/O but `write_sheet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
.notes { color: #555; margin: 0 0 18px; padding-left: 18px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 10px; vertical-align: top; text-align: left; }
th { background: #f0f0f0; font-weight: 600; }
.type { font-weight: 600; font-size: 15px; }
.caption { color: #666; }
figure { margin: 0; }
figcaption { color: #666; font-size: 12px; margin-top: 4px; }
.checker {
  display: inline-block; line-height: 0; border: 1px solid #ddd;
  background-color: #fff;
  background-image:
    linear-gradient(45deg, #d6d6d6 25%, transparent 25%),
    linear-gradient(-45deg, #d6d6d6 25%, transparent 25%),
    linear-gradient(45deg, transparent 75%, #d6d6d6 75%),
    linear-gradient(-45deg, transparent 75%, #d6d6d6 75%);
  background-size: 16px 16px;
  background-position: 0 0, 0 8px, 8px -8px, -8px 0;
}
.checker img { max-width: min(340px, 25vw); max-height: 340px; }
td:last-child { min-width: 250px; }
.status { font-weight: 600; }
.SUCCEEDED { color: #1a7f37; } .FAILED, .CANCELLED { color: #cf222e; }
.error { color: #cf222e; white-space: pre-wrap; }
dl { margin: 0; display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; font-size: 13px; }
dt { color: #666; } dd { margin: 0; font-variant-numeric: tabular-nums; }
code { font-size: 12px; }
.badge {
  margin: 0 0 8px; padding: 6px 10px; border-radius: 6px; font-size: 13px;
  max-width: min(320px, 25vw);
  border: 1px solid;
}
.badge.real { background: #e6f4ea; border-color: #9ad0a8; color: #14532d; }
.badge.unreal { background: #fff4e0; border-color: #f0b85a; color: #6b3d00; }
.badge.none { background: #f0f0f0; border-color: #d0d0d0; color: #444; }
.badge b { font-weight: 700; }
dt[title] { cursor: help; text-decoration: underline dotted; }
.legend { color: #555; font-size: 13px; margin: 18px 0 0; max-width: 70em; }
.legend h2 { font-size: 15px; margin: 0 0 6px; }
.legend dl { grid-template-columns: max-content 1fr; }
"""

OUTSIDE = "outside worker stages"
# What each time covers (tooltips and legend). The control plane's times come from the job's
# state changes; the worker's are what it measured itself and reported with the result.
TIMING_HELP = {
    "queue": "control plane: from the submission (QUEUED) until the dispatcher had handed the "
    "job to Runpod (RUNNING)",
    "run": "control plane: from RUNNING until the result came back; the worker's stages below, "
    f"plus what they do not cover ({OUTSIDE})",
    "total": "control plane: queue + run, from the submission to the result",
    "worker download": "worker: fetching the input images",
    "worker queue": "worker: handing the pixels to ComfyUI and waiting in ComfyUI's queue "
    "(ComfyUI runs one prompt at a time, so jobs submitted together wait here for each other)",
    "worker execute": "worker: ComfyUI running the workflow (the job's GPU seconds)",
    "worker collect": "worker: reading the outputs back from ComfyUI",
    "worker encode": "worker: encoding the output files (PNG, JPEG or WebP)",
    "worker upload": "worker: storing the output files",
    OUTSIDE: "run minus the worker's stages: waiting in Runpod's queue for the worker, the "
    "worker's checks before the download, and delivering the result to the control plane",
}


@dataclass(frozen=True)
class Picture:
    href: str  # relative to the sheet
    width: int | None = None
    height: int | None = None
    label: str = ""


@dataclass(frozen=True)
class Badge:
    kind: str  # "real", "unreal" (a model that is not the real one) or "none" (no model ran)
    text: str


@dataclass(frozen=True)
class SheetRow:
    job_type: str
    status: str
    before: Picture
    after: list[Picture] = field(default_factory=list)
    caption: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float | None] = field(default_factory=dict)
    worker_timings: dict[str, float] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    error: str | None = None
    badge: Badge | None = None


def relative_href(path: Path, sheet_dir: Path) -> str:
    """A URL-quoted relative link from the sheet's folder to `path`."""
    rel = path.resolve().relative_to(sheet_dir.resolve())
    return "/".join(quote(part) for part in rel.parts)


def _picture(picture: Picture) -> str:
    size = f"{picture.width}×{picture.height}" if picture.width and picture.height else ""
    label = " · ".join(part for part in (size, picture.label) if part)
    return (
        f'<figure><a class="checker" href="{escape(picture.href)}">'
        f'<img src="{escape(picture.href)}" alt="{escape(label or picture.href)}" loading="lazy">'
        f"</a><figcaption>{escape(label)}</figcaption></figure>"
    )


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _timings(row: SheetRow) -> list[tuple[str, float | None]]:
    """The row's times by label, control plane first, then the worker's and the remainder."""
    keys = [key for key in ("queue_s", "run_s", "total_s") if key in row.timings]
    shown = [(key.removesuffix("_s"), row.timings[key]) for key in keys]
    shown += [(f"worker {stage}", value) for stage, value in row.worker_timings.items()]
    run = row.timings.get("run_s")
    if run is not None and row.worker_timings:
        shown.append((OUTSIDE, run - sum(row.worker_timings.values())))
    return shown


def _help(label: str) -> str:
    return TIMING_HELP.get(label, f"{label}: as the worker reported it")


def _details(row: SheetRow) -> str:
    status = f'<span class="status {escape(row.status)}">{escape(row.status)}</span>'
    items: list[tuple[str, str, str | None]] = [("status", status, None)]
    for label, value in _timings(row):
        items.append((label, escape(_seconds(value)), _help(label)))
    if row.models:
        items.append(("models", "<br>".join(escape(m) for m in row.models), None))
    if row.params:
        shown = ", ".join(f"{k}={v}" for k, v in row.params.items())
        items.append(("params", f"<code>{escape(shown)}</code>", None))
    body = "".join(f"<dt{_title(tip)}>{escape(k)}</dt><dd>{v}</dd>" for k, v, tip in items)
    error = f'<p class="error">{escape(row.error)}</p>' if row.error else ""
    return f"<dl>{body}</dl>{error}"


def _title(tip: str | None) -> str:
    return "" if tip is None else f' title="{escape(tip)}"'


def _legend(rows: list[SheetRow]) -> str:
    """What each time on the sheet covers, for the labels the sheet shows."""
    labels = dict.fromkeys(label for row in rows for label, _ in _timings(row))
    if not labels:
        return ""
    items = "".join(f"<dt>{escape(label)}</dt><dd>{escape(_help(label))}</dd>" for label in labels)
    return (
        '<section class="legend"><h2>What the times cover</h2>'
        f"<p>total = queue + run; run = the worker's stages + {OUTSIDE}.</p>"
        f"<dl>{items}</dl></section>"
    )


def _badge(badge: Badge | None) -> str:
    if badge is None:
        return ""
    head, sep, rest = badge.text.partition(":")
    text = f"<b>{escape(head)}</b>{escape(sep + rest)}" if sep else escape(badge.text)
    return f'<p class="badge {escape(badge.kind)}">{text}</p>'


def render_sheet(rows: list[SheetRow], *, title: str, notes: list[str] | None = None) -> str:
    """The whole page as a string."""
    body_rows = []
    for row in rows:
        after = "".join(_picture(p) for p in row.after) or '<p class="error">no output</p>'
        body_rows.append(
            f'<tr data-type="{escape(row.job_type)}">'
            f'<td><div class="type">{escape(row.job_type)}</div>'
            f'<div class="caption">{escape(row.caption)}</div></td>'
            f"<td>{_picture(row.before)}</td><td>{_badge(row.badge)}{after}</td>"
            f"<td>{_details(row)}</td>"
            "</tr>"
        )
    note_items = "".join(f"<li>{escape(n)}</li>" for n in notes or [])
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<ul class="notes">{note_items}</ul>'
        "<table><thead><tr><th>type</th><th>before</th><th>after</th><th>details</th></tr>"
        f"</thead><tbody>{''.join(body_rows)}</tbody></table>{_legend(rows)}</body></html>\n"
    )


def write_sheet(path: Path, rows: list[SheetRow], *, title: str, notes: list[str]) -> Path:
    path.write_text(render_sheet(rows, title=title, notes=notes), encoding="utf-8")
    return path
