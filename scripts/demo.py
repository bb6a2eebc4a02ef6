#!/usr/bin/env python3
"""SimplyPNG demo: the whole loop on one machine, no Docker and no GPU needed.

    bash scripts/demo.sh                      # real ComfyUI 0.3.64 + pinned models (downloads)
    bash scripts/demo.sh --double             # ComfyUI test double + tiny models (offline, ~1 min)
    COMFYUI_DIR=~/ComfyUI MODELS_DIR=~/models bash scripts/demo.sh   # use what you have

It prepares ComfyUI (COMFYUI_DIR, else a pinned clone in the work folder) and the models
(MODELS_DIR, else fetched and sha256-checked), starts the control plane on its embedded
defaults (SQLite, local storage), a dispatcher, a reconciler and the worker, uploads one sample
image per type through the public API, waits for the jobs, downloads the outputs and writes a
before/after contact sheet. Every process it starts is stopped when it ends, on Ctrl-C too.

The mask-based types (bg_remove, cutout_subject, white_bg_ecomm, jpeg_to_png with
transparent=subject) run the real u2netp in every mode, --double included: it comes from the
checkout's models/ folder (scripts/bootstrap.sh puts it there). The sheet labels each output
with the models that made it and says plainly when one is not a real trained model (its
sha256 is not the one models.lock pins), as the double's big-LaMa and Real-ESRGAN are not.

Logs: <workdir>/logs/<process>.log. Exit status: 0 all jobs succeeded, 1 a job failed or
timed out, 2 set-up failed (or a process died), 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: api_stub/ and handler/ sit beside scripts/
    sys.path.insert(0, str(REPO_ROOT))

from demokit import comfy, stack  # noqa: E402
from demokit.client import ApiCallFailed, DemoClient, Tracked, track  # noqa: E402
from demokit.contact_sheet import write_sheet  # noqa: E402
from demokit.procs import ChildFailed, Children, Interrupted  # noqa: E402
from demokit.provenance import pinned_sha256, run_notes  # noqa: E402
from demokit.results import Result, collect, summary  # noqa: E402
from demokit.samples import SEGMENTERS, Sample, write_samples  # noqa: E402

from handler.settings import ALL_TYPES  # noqa: E402

log = logging.getLogger("demo")

EXIT_JOB_FAILED = 1
EXIT_SETUP = 2
EXIT_INTERRUPTED = 130
# Left from an earlier run and rebuilt each time (the ComfyUI install and tiny models stay).
PER_RUN = ("api", "outputs", "logs", "worker", "comfy-double", "samples")


def _types(value: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(names) - set(ALL_TYPES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown type(s) {', '.join(unknown) or '(none)'}; known: {', '.join(ALL_TYPES)}"
        )
    return list(dict.fromkeys(names))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--double",
        action="store_true",
        help="use the ComfyUI test double with random-weight tiny models, plus the real u2netp "
        "(CI; no downloads)",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="fail instead of falling back to --double when a host to download from (GitHub, "
        "Hugging Face) is unreachable",
    )
    parser.add_argument(
        "--types", type=_types, default=list(ALL_TYPES), help="comma separated (default: all six)"
    )
    parser.add_argument(
        "--segmenter",
        choices=SEGMENTERS,
        default="u2netp",
        help="segmentation model of the mask-based jobs (default u2netp: the real trained "
        "model every machine has after scripts/bootstrap.sh, and it runs on a CPU; birefnet "
        "is a 444 MB download that wants a GPU, and with --double a random-weight stand-in)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=REPO_ROOT / ".demo", help="work folder (default .demo)"
    )
    parser.add_argument(
        "--comfyui-dir",
        type=Path,
        default=_env_path("COMFYUI_DIR"),
        help="an existing ComfyUI 0.3.64 checkout (default $COMFYUI_DIR, else install one)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=_env_path("MODELS_DIR"),
        help="a folder holding the pinned models (default $MODELS_DIR, else fetch them)",
    )
    parser.add_argument(
        "--job-timeout",
        type=_seconds,
        help="deadline of each job in seconds, 1-3600 (default 180 with --double, else 1800: "
        "on a CPU the jobs queue behind each other in ComfyUI)",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the stack up until Ctrl-C"
    )
    args = parser.parse_args(argv)
    if args.job_timeout is None:
        args.job_timeout = 180 if args.double else 1800
    return args


def _seconds(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds in 1-3600")
    return seconds


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    log.setLevel(logging.INFO)  # the demo's own progress; libraries (httpx) stay quiet
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in PER_RUN:
        shutil.rmtree(workdir / name, ignore_errors=True)
    children = Children(workdir / "logs", workdir / "pids.json")
    atexit.register(children.stop_all)
    children.install_signal_handlers()
    try:
        return run(args, workdir, children)
    except Interrupted as exc:
        log.warning("interrupted (%s)", exc)
        return EXIT_INTERRUPTED
    except TimeoutError as exc:
        log.error("demo failed: %s", exc)
        log.error("logs of every process: %s", workdir / "logs")
        return EXIT_JOB_FAILED
    except (comfy.SetupError, ChildFailed, ApiCallFailed) as exc:
        log.error("demo failed: %s", exc)
        log.error("logs of every process: %s", workdir / "logs")
        return EXIT_SETUP
    finally:
        children.stop_all()


def run(args: argparse.Namespace, workdir: Path, children: Children) -> int:
    types: list[str] = args.types
    started = time.monotonic()
    base_env = stack.clean_env(os.environ)

    log.info("==> [1/6] drawing sample images (%s)", ", ".join(types))
    samples = write_samples(workdir / "samples", types, segmenter=args.segmenter)
    models = comfy.models_needed({t: s.params for t, s in samples.items()})
    if comfy.U2NETP in models:
        comfy.require_u2netp()  # before anything starts: bootstrap fetches it

    log.info("==> [2/6] preparing ComfyUI and the models (%s)", ", ".join(sorted(models)))
    double = None
    if not args.double and (unreachable := _offline(args, workdir, models)):
        still = (
            "the mask-based jobs still run the real u2netp, and the\n    !! sheet says"
            if comfy.U2NETP in models
            else "the sheet says"
        )
        log.warning(
            "    !! %s unreachable and COMFYUI_DIR / MODELS_DIR are not set:\n"
            "    !! falling back to the ComfyUI test double with random-weight tiny models (the "
            "whole\n    !! pipeline runs for real; %s which outputs come from no real model).\n"
            "    !! Use --no-fallback to fail instead.",
            " / ".join(unreachable) + (" is" if len(unreachable) == 1 else " are"),
            still,
        )
        args.double = True
    if args.double:
        log.info("    building random-weight tiny models (the real formats and loaders)")
        double, double_url = comfy.start_double(children, workdir, base_env)
        target = comfy.double_target(workdir, double_url)
    else:
        target = _prepare_real(args, workdir, children, base_env, models)
    log.info("    %s", target.description)

    log.info("==> [3/6] starting the worker (ComfyUI check and warm-up)")
    worker, worker_port = stack.start_worker(
        children,
        stack.worker_env(base_env, target, types, args.segmenter),
        workdir=workdir,
        # Only for a worker that hangs while alive (one that exits fails at once, and the wait
        # says every 5 s what it waits for): warming up every type takes minutes on a busy CPU.
        deadline_s=600 if args.double else 1800,
    )
    log.info(
        "    worker ready on port %d (runpod local API) after %.0f s",
        worker_port,
        time.monotonic() - started,
    )

    log.info("==> [4/6] starting the control plane (SQLite + local storage in %s)", workdir / "api")
    api = stack.start_api(
        children,
        stack.api_env(base_env, workdir=workdir, job_timeout_s=args.job_timeout),
        workdir=workdir,
        worker_port=worker_port,
        credits=10 * len(types),
    )
    log.info("    API at %s, with a dispatcher and a reconciler", api.url)
    services = [*api.processes, worker, *([double] if double else [])]

    def still_ok() -> None:
        for child in services:
            if not child.alive():
                raise child.failure(f"exited with code {child.popen.returncode}")

    client = DemoClient(api.url, api.api_key)
    try:
        log.info("==> [5/6] uploading the samples and submitting %d job(s)", len(types))
        jobs = _submit(client, samples, args.job_timeout)
        track(client, jobs, deadline_s=args.job_timeout + 120, still_ok=still_ok)
        log.info("==> [6/6] downloading the outputs")
        results = collect(
            client, jobs, samples, workdir, pinned=pinned_sha256(), double=args.double
        )
    finally:
        client.close()
    sheet = write_sheet(
        workdir / "contact_sheet.html",
        [r.row for r in results],
        title="SimplyPNG demo: before and after",
        notes=_notes(args, target.description, jobs, results),
    )
    failed = _report(results, workdir, sheet, time.monotonic() - started)
    if args.keep_running:
        _keep_running(api, workdir, still_ok)
    return EXIT_JOB_FAILED if failed else 0


def _offline(args: argparse.Namespace, workdir: Path, models: set[str]) -> list[str]:
    """The hosts the real path would download from that cannot be reached (none needed when
    ComfyUI is installed and the models are in place)."""
    if args.no_fallback:
        return []
    comfyui = args.comfyui_dir or workdir / "ComfyUI"
    hosts = comfy.hosts_to_reach(
        comfyui_to_clone=None if args.comfyui_dir else comfyui,
        fetch_into=None if args.models_dir else comfyui / "models",
        models=models,
    )
    unreachable = []
    for host in hosts:
        try:
            socket.create_connection((host, 443), timeout=5).close()
        except OSError:
            unreachable.append(host)
    return unreachable


def _prepare_real(
    args: argparse.Namespace,
    workdir: Path,
    children: Children,
    env: dict[str, str],
    models: set[str],
) -> comfy.ComfyTarget:
    from handler.gpu_check import check_gpu

    if args.comfyui_dir is not None:
        comfyui = args.comfyui_dir.resolve()
        if not (comfyui / "main.py").is_file():
            raise comfy.SetupError(f"COMFYUI_DIR={comfyui} has no main.py: not a ComfyUI checkout")
        log.info("    using COMFYUI_DIR=%s", comfyui)
    else:
        comfyui = comfy.install_comfyui(children, workdir / "ComfyUI", env)
    comfy.link_node_pack(comfyui)
    comfy.prepare_models(children, comfyui, args.models_dir, models, env)
    return comfy.real_target(comfyui, cpu=not check_gpu().ok)


def _submit(client: DemoClient, samples: dict[str, Sample], timeout_s: int) -> list[Tracked]:
    jobs = []
    for index, (job_type, sample) in enumerate(samples.items(), start=1):
        item = client.upload(sample.path, sample.content_type)
        view = client.create_job(job_type, sample.params, [item], timeout_s)
        log.info(
            "    [%d/%d] %-15s %-11s %s", index, len(samples), job_type, view["status"], view["id"]
        )
        jobs.append(Tracked(index, job_type, view["id"], view, time.monotonic()))
    return jobs


def _notes(
    args: argparse.Namespace, description: str, jobs: list[Tracked], results: list[Result]
) -> list[str]:
    views = [j.view for j in jobs]
    versions = {
        f"worker {v.get('worker_version')}, ComfyUI {v.get('comfyui_version')}"
        for v in views
        if v.get("worker_version")
    }
    notes = [description, *sorted(versions)]
    notes += run_notes([r.models for r in results], double=args.double)
    notes.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    return notes


def _report(results: list[Result], workdir: Path, sheet: Path, elapsed: float) -> bool:
    lines, failed = summary(results)
    log.info("")
    log.info("Results (%.0f s in all):", elapsed)
    for line in lines:
        log.info("%s", line)
    log.info("")
    log.info("Contact sheet: %s", sheet)
    log.info("Logs:          %s", workdir / "logs")
    return failed


def _keep_running(api: stack.Api, workdir: Path, still_ok: Callable[[], None]) -> None:
    key_file = workdir / "api" / "demo-api-key"
    key_file.touch(mode=0o600)
    key_file.write_text(api.api_key + "\n", encoding="utf-8")
    # The API's port is free-picked: scripts and the README's walkthrough read it from here.
    (workdir / "api" / "demo-api-url").write_text(api.url + "\n", encoding="utf-8")
    log.info("")
    log.info("The stack keeps running; Ctrl-C stops it. API %s (OpenAPI: /openapi.json)", api.url)
    log.info(
        "Its URL is in %s; the demo user's API key in %s (readable by you only). Try:",
        workdir / "api" / "demo-api-url",
        key_file,
    )
    log.info('  curl -H "Authorization: Bearer $(cat %s)" %s/api/me', key_file, api.url)
    try:
        while True:
            still_ok()
            time.sleep(1.0)
    except Interrupted:
        log.info("stopping on request")


if __name__ == "__main__":
    sys.exit(main())
