"""Who holds a local TCP port, so that the supervisor adopts only the ComfyUI it started.

Socket owners come from Linux's /proc (the worker's platform). Where /proc is missing the
owners are unknown (None), and the supervisor relies on the free-port check before it starts
the child and on /system_stats' argv.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As asyncio's servers (so ComfyUI's aiohttp) do: leftover TIME_WAIT connections of a
        # child that just died do not block the port, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int, proc: Path) -> set[str] | None:
    tables = [proc / "net" / "tcp", proc / "net" / "tcp6"]
    if not tables[0].is_file():
        return None
    inodes: set[str] = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 in this kernel
        for row in rows:
            fields = row.split()
            # fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if (
                len(fields) > 9
                and fields[3] == LISTEN
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def _holds(pid: int, wanted: set[str], proc: Path) -> bool:
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return False  # gone, or another user's process
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in wanted:
            return True
    return False


def listeners(port: int, *, proc: Path | None = None) -> set[int] | None:
    """The PIDs this user can see that hold a socket listening on `port` (any address);
    None where /proc is missing. Other users' processes are invisible: an empty set while
    the port is taken means "someone we cannot see"."""
    proc = proc or PROC
    inodes = _listening_inodes(port, proc)
    if inodes is None:
        return None
    if not inodes:
        return set()
    pids = (int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    return {pid for pid in pids if _holds(pid, inodes, proc)}


def describe(pid: int, *, proc: Path | None = None) -> str:
    """`pid 123: python -m http.server 8188`, for error messages."""
    proc = proc or PROC
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return f"pid {pid}"
    command = " ".join(part.decode(errors="replace") for part in argv)
    return f"pid {pid}: {command[:200]}" if command else f"pid {pid}"
