"""Finished jobs into files and words: download the outputs, build the contact sheet rows and
the summary the demo prints (which also decides the exit status). Each row and summary line
says which models ran and whether each is the real trained one (provenance.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .client import DemoClient, Tracked, output_name
from .contact_sheet import Picture, SheetRow, relative_href
from .provenance import ModelLabel, badge, label_models, short_verdict
from .samples import Sample


@dataclass(frozen=True)
class Result:
    job_type: str
    status: str
    outputs: list[Path]
    row: SheetRow
    models: list[ModelLabel] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return self.row.error


def collect(
    client: DemoClient,
    jobs: list[Tracked],
    samples: dict[str, Sample],
    workdir: Path,
    *,
    pinned: Mapping[str, str | None],
    double: bool,
) -> list[Result]:
    """Download every output into workdir/outputs/<type>.<ext>; one result per job.

    `pinned`: {model: sha256} of the repository's models.lock; `double`: the run used the test
    double's tiny models (it only words what is said of a model that is not real)."""
    results = []
    for item in jobs:
        outputs = item.view.get("outputs") or []
        paths, pictures = [], []
        for index, output in enumerate(outputs):
            name = output_name(item.job_type, output["format"], index, len(outputs))
            path = client.download(output["url"], workdir / "outputs" / name)
            with Image.open(path) as image:
                mode = image.mode
            paths.append(path)
            pictures.append(_output_picture(output, relative_href(path, workdir), mode))
        sample = samples[item.job_type]
        labels = label_models(item.view.get("models") or [], pinned)
        row = sheet_row(
            item, sample, relative_href(sample.path, workdir), pictures, labels, double=double
        )
        results.append(Result(item.job_type, item.status, paths, row, labels))
    return results


def _output_picture(output: dict[str, Any], href: str, mode: str) -> Picture:
    label = f"{output['format']} {mode} · {output['bytes'] / 1024:.0f} KiB"
    return Picture(href, output["width"], output["height"], label)


def sheet_row(
    item: Tracked,
    sample: Sample,
    before_href: str,
    after: list[Picture],
    labels: list[ModelLabel],
    *,
    double: bool,
) -> SheetRow:
    """The contact sheet row of one finished job, from its API view."""
    view = item.view
    error = view.get("error")
    timings = view.get("timings") or {}
    return SheetRow(
        job_type=item.job_type,
        status=item.status,
        before=Picture(before_href, *sample.size, sample.content_type.split("/")[1]),
        after=after,
        caption=sample.caption,
        params=sample.params,
        timings={k: timings.get(k) for k in ("queue_s", "run_s", "total_s")},
        worker_timings=timings.get("worker") or {},
        models=[label.text for label in labels],
        error=f"{error['code']}: {error['message']}" if error else None,
        badge=badge(item.job_type, item.status, labels, double=double),
    )


def summary(results: list[Result]) -> tuple[list[str], bool]:
    """Lines naming each output file, or each failure's code and message; and whether any
    job did not succeed."""
    lines, failed = [], False
    for result in results:
        if result.status == "SUCCEEDED" and not result.outputs:
            failed = True
            lines.append(f"  {result.job_type:<15} SUCCEEDED  but no output was reported")
        elif result.status == "SUCCEEDED":
            models = short_verdict(result.models)
            for path, picture in zip(result.outputs, result.row.after, strict=True):
                lines.append(
                    f"  {result.job_type:<15} SUCCEEDED  {path}  ({picture.label}; {models})"
                )
        else:
            failed = True
            lines.append(f"  {result.job_type:<15} {result.status:<10} {result.error or ''}")
    return lines, failed
