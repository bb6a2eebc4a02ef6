"""Which model produced each output, and whether it is the real trained one.

The rule is a fact, not a guess: a model is real when the sha256 the worker reports for it
(the job's metrics.models, from the models.lock the worker ran with) equals the sha256 the
repository's models.lock pins for that model's weights. The pinned files are the trained
models; the test double's tiny stand-ins have the real formats but random weights, so their
hashes differ. The demo's mode only chooses the words for a model that is not real.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.models_lock import DEFAULT_LOCK_PATH, load_lock

from .contact_sheet import Badge

# What a real model would have made, per type: "this output shows the plumbing, not a real …".
OUTPUT_NOUN = {
    "bg_remove": "cutout",
    "cutout_subject": "cutout",
    "object_remove": "inpainting",
    "white_bg_ecomm": "white-background shot",
    "upscale_2k": "upscale",
    "jpeg_to_png": "subject alpha",
}
SHORT = 8  # hex digits of a sha256 shown


def pinned_sha256(lock_path: Path = DEFAULT_LOCK_PATH) -> dict[str, str | None]:
    """{model: sha256 of its weights} as the repository's models.lock pins them."""
    return {e.model: e.sha256 for e in load_lock(lock_path) if e.role == "weights"}


@dataclass(frozen=True)
class ModelLabel:
    """One model a job reports having run, beside what models.lock pins for it."""

    name: str
    version: str
    sha256: str | None
    pinned: str | None  # models.lock's sha256 for this model; None when the lock lacks it
    in_lock: bool = True

    @property
    def real(self) -> bool:
        return self.sha256 is not None and self.sha256 == self.pinned

    @property
    def text(self) -> str:
        """ "name version · sha256 abcd1234…" and how it compares with models.lock."""
        digest = f"sha256 {_short(self.sha256)}" if self.sha256 else "no sha256 reported"
        if self.real:
            check = "= models.lock"
        elif not self.in_lock:
            check = "not in models.lock"
        else:
            check = f"models.lock pins {_short(self.pinned)}"
        return f"{self.name} {self.version} · {digest} ({check})"


def _short(digest: str | None) -> str:
    return f"{digest[:SHORT]}…" if digest else "?"


def label_models(
    reported: Iterable[Mapping[str, Any]], pinned: Mapping[str, str | None]
) -> list[ModelLabel]:
    return [
        ModelLabel(
            name=str(m.get("name")),
            version=str(m.get("version")),
            sha256=m.get("sha256") or None,
            pinned=pinned.get(str(m.get("name"))),
            in_lock=str(m.get("name")) in pinned,
        )
        for m in reported
    ]


def _why_not(label: ModelLabel, double: bool) -> str:
    if not label.in_lock:
        return f"{label.name} is not a model models.lock pins"
    if label.sha256 is None:
        return f"{label.name} was reported without a sha256, so it cannot be checked"
    if double:
        return (
            f"{label.name} has random weights here ({label.version}, sha256 "
            f"{_short(label.sha256)}: the test double's stand-in, not models.lock's "
            f"{_short(label.pinned)})"
        )
    return (
        f"{label.name} here is not the trained file (sha256 {_short(label.sha256)}, models.lock "
        f"pins {_short(label.pinned)})"
    )


def badge(job_type: str, status: str, labels: list[ModelLabel], *, double: bool) -> Badge | None:
    """The row's plain statement: which real model made the output, or that none did."""
    if not labels:
        if status != "SUCCEEDED":
            return None
        return Badge("none", "no model: this output comes from plain image operations")
    fakes = [label for label in labels if not label.real]
    if fakes:
        noun = OUTPUT_NOUN.get(job_type, "result")
        why = "; ".join(_why_not(label, double) for label in fakes)
        return Badge(
            "unreal",
            f"no real model on this machine: {why}, so this output shows the plumbing, "
            f"not a real {noun}",
        )
    named = ", ".join(
        f"{label.name} ({label.version}, sha256 {_short(label.sha256)})" for label in labels
    )
    return Badge("real", f"real model{'s' if len(labels) > 1 else ''}: {named}")


def short_verdict(labels: list[ModelLabel]) -> str:
    """A few words for the terminal summary."""
    if not labels:
        return "no model"
    parts = [f"{'real' if label.real else 'NOT real'} {label.name}" for label in labels]
    return ", ".join(parts)


def run_notes(rows: Iterable[list[ModelLabel]], *, double: bool) -> list[str]:
    """The sheet's summary of every model the run's jobs reported, real and not."""
    seen: dict[tuple[str, str, str | None], ModelLabel] = {}
    for labels in rows:
        for label in labels:
            seen.setdefault((label.name, label.version, label.sha256), label)
    real = [label for label in seen.values() if label.real]
    fake = [label for label in seen.values() if not label.real]
    notes = []
    if real:
        names = ", ".join(f"{label.name} {label.version}" for label in real)
        notes.append(
            f"Real trained models in this run: {names} (the sha256 the worker reported is the "
            "one models.lock pins)."
        )
    else:
        notes.append("No real trained model ran in this run.")
    if fake:
        names = ", ".join(f"{label.name} {label.version}" for label in fake)
        what = (
            "random-weight stand-ins in the real formats"
            if double
            else "not the files models.lock pins"
        )
        notes.append(
            f"Not real on this machine: {names}. They are {what}, so their outputs show the "
            "plumbing (formats, sizes, alpha), not what the trained models would make."
        )
    return notes
