"""ComfyUI test double: a stand-in for a real ComfyUI 0.3.64 server, for tests only.

This is NOT ComfyUI. It is a small aiohttp server that speaks the same HTTP and websocket
protocol (routes, JSON shapes, frame order), modelled on recordings of a real 0.3.64 server, so
that the worker's ComfyUI client can be tested end to end on a laptop:

- GET /system_stats, /object_info, /queue, /history/{id}, /view, /features, /prompt;
  POST /prompt (with ComfyUI's validation and error shapes), /upload/image, /interrupt, /queue.
- ws /ws?clientId=: `status` first, then per prompt `execution_start`, `execution_cached`,
  `progress_state`, `executing`, `progress`, `executed`, `execution_success` /
  `execution_error` / `execution_interrupted`, `status`, and `executing` with node null.
- It executes graphs for real: node classes in ComfyUI's format (INPUT_TYPES, RETURN_TYPES,
  FUNCTION, OUTPUT_NODE, lazy inputs with check_lazy_status) run in dependency order, with
  ComfyUI's classic output cache. Small emulations of the core nodes the project uses are
  built in (comfy_double_nodes); extra node packs (a folder whose `__init__.py` exports
  NODE_CLASS_MAPPINGS) load as in ComfyUI. Prompts are validated as ComfyUI does
  (comfy_double_validation).
- Fault injection, clearly double-only (`Faults`, or POST /double/fault): slow nodes, failing
  nodes, a dropped websocket, silence while finishing, HTTP 500 on /prompt, slow start-up.

Run it in-process with `serve_in_thread(ComfyDouble(tmp_path))`, or as a process in place of
ComfyUI's main.py: `python -m tests.fakes.comfy_double --port P [--base-directory D]
[--input-directory D] [--output-directory D] [--node-pack DIR] [--startup-delay S]` (from the
repository root; other ComfyUI flags are accepted and ignored), or from a fake main.py that
calls `tests.fakes.comfy_double.main()`.
Lists (OUTPUT_IS_LIST mapped over consumers, INPUT_IS_LIST) are modelled. Not supported: subgraph expansion, async nodes,
V3 (io.ComfyNode) classes, model management, execution blockers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import io
import json
import logging
import math
import mimetypes
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.comfy_double_nodes import (
    CORE_NODES,
    IMAGE_EXTENSIONS,
    MODEL_EXTENSIONS,
    InterruptProcessingException,
    acquire_comfy_shims,
    load_node_pack,
    release_comfy_shims,
    running_in,
)
from tests.fakes.comfy_double_validation import (
    NodeClass,
    declared_inputs,
    error_body,
    format_value,
    full_type_name,
    function_args,
    input_info,
    is_link,
    validate_prompt,
)

log = logging.getLogger("comfy_double")

DOUBLE_VERSION = "0.3.64-double"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # ComfyUI's --max-upload-size default
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_BYTES}
_BINARY = "__binary__"  # outbox marker for binary (preview) frames
_PREVIEW_IMAGE, _PREVIEW_IMAGE_WITH_METADATA = 1, 4  # ComfyUI's BinaryEventTypes
_HTTP_500_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"


class _ListValue(list):
    """An output that ComfyUI treats as a list of items (OUTPUT_IS_LIST)."""


class DoubleInjectedError(RuntimeError):
    """What a `Faults.fail` entry raises inside a node."""


@dataclass
class Faults:
    """Double-only fault injection. Node keys are node ids or class_type names.

    slow: seconds a node sleeps before running; an interrupt takes effect only when the next
      node starts, as in ComfyUI.
    hold: an Event a node waits for before running (in-process tests only): the test decides
      when it finishes, so "still running" or "still queued" never depends on the machine's
      speed.
    fail: message of a DoubleInjectedError the node raises (an `execution_error`).
    drop_ws_at: websocket message type; the first such message of a prompt is not sent and the
      prompt's socket is closed instead (one shot).
    silent_from: websocket message type; from the first such message on, nothing more about that
      prompt is sent (one shot). The prompt still finishes and lands in /history.
    prompt_http_status: answer every POST /prompt with this status and ComfyUI's plain-text 500.
    """

    slow: dict[str, float] = field(default_factory=dict)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)
    drop_ws_at: str | None = None
    silent_from: str | None = None
    prompt_http_status: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)} - {"hold"}  # Events do not travel as JSON
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {unknown}")
        return cls(**data)


@dataclass
class _Run:
    """One prompt's websocket audience, progress states and history messages."""

    prompt_id: str
    client_id: str | None
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[list[Any]] = field(default_factory=list)


@dataclass
class _Graph:
    """One prompt's execution: node outputs so far, what ran, what was visited."""

    run: _Run
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    signatures: dict[str, str]
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    executed: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)


def _node_sort_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), node_id) if node_id.isdigit() else (sys.maxsize, node_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# The server.


class ComfyDouble:
    """The ComfyUI test double (see the module docstring). One instance is one server."""

    def __init__(
        self,
        base_dir: Path,
        *,
        input_dir: Path | None = None,
        output_dir: Path | None = None,
        temp_dir: Path | None = None,
        models_dir: Path | None = None,
        node_packs: tuple[Path, ...] | list[Path] = (),
        startup_delay_s: float = 0.0,
        faults: Faults | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ):
        base = Path(base_dir).resolve()
        self.max_upload_bytes = max_upload_bytes
        self.input_dir = Path(input_dir or base / "input").resolve()
        self.output_dir = Path(output_dir or base / "output").resolve()
        self.temp_dir = Path(temp_dir or base / "temp").resolve()
        self.models_dir = Path(models_dir or base / "models").resolve()
        for folder in (self.input_dir, self.output_dir, self.temp_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.startup_delay_s = startup_delay_s
        self.faults = faults or Faults()
        self.base_url: str | None = None
        # Control calls received (POST /prompt, /interrupt, /queue), for test assertions.
        self.requests: list[dict[str, Any]] = []
        self.ws_connections: list[str] = []  # clientId of every websocket opened, in order
        self.node_classes: dict[str, NodeClass] = dict(CORE_NODES)
        # Packs may import ComfyUI's modules lazily: keep the shims while this double lives.
        self._uses_shims = bool(node_packs) and acquire_comfy_shims()
        with self.bound():
            for pack in node_packs:
                self.node_classes.update(load_node_pack(Path(pack)))

        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._socket_flags: dict[str, dict[str, Any]] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._running: dict[int, tuple[Any, ...]] = {}
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._number = 0
        self._task_counter = 0
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self._silent_prompt: str | None = None
        self._interrupt = threading.Event()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[tuple[str, Any, str | None]] | None = None
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    # ---- folders --------------------------------------------------------------------------

    def bound(self) -> contextlib.AbstractContextManager[None]:
        """Make this double the one node code and shims see (for calls into node classes)."""
        return running_in(self)

    def input_path(self, name: str) -> Path:
        for tag, folder in (
            (" [input]", self.input_dir),
            (" [output]", self.output_dir),
            (" [temp]", self.temp_dir),
        ):
            if name.endswith(tag):
                return folder / name[: -len(tag)]
        return self.input_dir / name

    def input_images(self) -> list[str]:
        names = [
            entry.name
            for entry in self.input_dir.iterdir()
            if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS
        ]
        return sorted(names)

    def model_files(self, folder_name: str) -> list[str]:
        folder = self.models_dir / folder_name
        if not folder.is_dir():
            return []
        return sorted(
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS
        )

    # ---- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_bytes)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/features", self._features)
        app.router.add_get("/object_info", self._object_info)
        app.router.add_get("/object_info/{node_class}", self._object_info_one)
        app.router.add_get("/prompt", self._get_prompt)
        app.router.add_post("/prompt", self._post_prompt)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_post("/interrupt", self._post_interrupt)
        app.router.add_get("/history", self._get_history_all)
        app.router.add_get("/history/{prompt_id}", self._get_history)
        app.router.add_post("/history", self._post_history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload_image)
        app.router.add_post("/double/fault", self._set_fault)
        app.router.add_get("/double/requests", self._get_requests)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on host:port (0 = any free port) and return the port."""
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._wakeup = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._publish_loop()),
            asyncio.create_task(self._worker_loop()),
        ]
        if self.startup_delay_s:
            await asyncio.sleep(self.startup_delay_s)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}"
        log.info("To see the GUI go to: %s", self.base_url)
        return bound

    async def close(self) -> None:
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in list(self._sockets.values()):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._uses_shims:
            self._uses_shims = False
            release_comfy_shims()

    # ---- outbox ---------------------------------------------------------------------------

    def _emit(self, event: str, data: Any, sid: str | None) -> None:
        assert self._outbox is not None
        self._outbox.put_nowait((event, data, sid))

    def _emit_threadsafe(self, event: str, data: Any, sid: str | None) -> None:
        assert self._loop is not None and self._outbox is not None
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, (event, data, sid))

    def _suppressed(self, event: str, data: Any, sid: str | None) -> bool:
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if prompt_id is None:
            return False
        if prompt_id == self._silent_prompt:
            return True
        faults = self.faults
        if faults.silent_from == event:
            faults.silent_from = None
            self._silent_prompt = prompt_id
            return True
        if faults.drop_ws_at == event and sid is not None and sid in self._sockets:
            faults.drop_ws_at = None
            ws = self._sockets.pop(sid)
            self._tasks.append(asyncio.create_task(_close(ws)))
            return True
        return False

    async def _publish_loop(self) -> None:
        assert self._outbox is not None
        while True:
            event, data, sid = await self._outbox.get()
            if self._suppressed(event, data, sid):
                continue
            if sid is None:
                targets = list(self._sockets.values())
            else:
                targets = [self._sockets[sid]] if sid in self._sockets else []
            for ws in targets:
                try:
                    if event == _BINARY:
                        await ws.send_bytes(data)
                    else:
                        await ws.send_json({"type": event, "data": data})
                except Exception as exc:  # a closing socket; ComfyUI ignores these too
                    log.debug("send failed: %s", exc)

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._pending) + len(self._running)}}

    def _queue_updated(self) -> None:
        self._emit("status", {"status": self._queue_info()}, None)

    # ---- websocket ------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.ws_connections.append(sid)
        # A second socket with the same clientId replaces (starves) the first, as in ComfyUI.
        self._sockets[sid] = ws
        self._socket_flags[sid] = {}
        await ws.send_json({"type": "status", "data": {"status": self._queue_info(), "sid": sid}})
        if self._client_id == sid and self._last_node_id is not None:
            await ws.send_json({"type": "executing", "data": {"node": self._last_node_id}})
        first = True
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    self._socket_flags[sid] = dict(data.get("data") or {})
                    await ws.send_json({"type": "feature_flags", "data": SERVER_FEATURES})
                first = False
        finally:
            if self._sockets.get(sid) is ws:
                del self._sockets[sid]
                self._socket_flags.pop(sid, None)
        return ws

    # ---- HTTP: info -----------------------------------------------------------------------

    async def _system_stats(self, request: web.Request) -> web.Response:
        try:
            from importlib.metadata import version

            torch_version = version("torch")
        except Exception:
            torch_version = None
        stats = {
            "system": {
                "os": os.name,
                "ram_total": 0,
                "ram_free": 0,
                "comfyui_version": DOUBLE_VERSION,
                "python_version": sys.version,
                "pytorch_version": torch_version,
                "embedded_python": False,
                "argv": sys.argv,
            },
            "devices": [
                {
                    "name": "cpu",
                    "type": "cpu",
                    "index": None,
                    "vram_total": 0,
                    "vram_free": 0,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }
        return web.json_response(stats)

    def _node_info(self, name: str) -> dict[str, Any]:
        cls = self.node_classes[name]
        spec = cls.INPUT_TYPES()
        return {
            "input": spec,
            "input_order": {key: list(value) for key, value in spec.items()},
            "output": list(cls.RETURN_TYPES),
            "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
            "name": name,
            "display_name": getattr(cls, "DISPLAY_NAME", name),
            "description": getattr(cls, "DESCRIPTION", ""),
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
        }

    async def _object_info(self, request: web.Request) -> web.Response:
        out = {}
        with self.bound():
            for name in self.node_classes:
                try:
                    out[name] = self._node_info(name)
                except Exception:
                    log.exception("error while retrieving information for the %r node", name)
        return web.json_response(out)

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        with self.bound():
            out = {name: self._node_info(name)} if name in self.node_classes else {}
        return web.json_response(out)

    # ---- HTTP: prompts and queue ----------------------------------------------------------

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response({**SERVER_FEATURES, "max_upload_size": self.max_upload_bytes})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _post_prompt(self, request: web.Request) -> web.Response:
        if self.faults.prompt_http_status:
            return web.Response(status=self.faults.prompt_http_status, text=_HTTP_500_TEXT)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            return web.Response(status=500, text=_HTTP_500_TEXT)
        # The graph is kept for tests that check what the worker sent (not part of the protocol).
        self.requests.append(
            {
                "path": "/prompt",
                "json": {"prompt_id": body.get("prompt_id")},
                "graph": body.get("prompt"),
            }
        )
        if "number" in body:
            number = float(body["number"])
        else:
            number = -self._number if body.get("front") else self._number
            self._number += 1
        if "prompt" not in body:
            error = error_body("no_prompt", "No prompt provided", "No prompt provided")
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        try:
            with self.bound():
                valid, invalid, outputs, node_errors = validate_prompt(prompt, self.node_classes)
        except Exception:
            log.exception("validation crashed")
            return web.Response(status=500, text=_HTTP_500_TEXT)
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            return web.json_response({"error": invalid, "node_errors": node_errors}, status=400)
        heapq.heappush(self._pending, (number, prompt_id, prompt, extra_data, outputs))
        self._queue_updated()
        assert self._wakeup is not None
        self._wakeup.set()
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [list(item) for item in self._running.values()]
        pending = [list(item) for item in self._pending]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": "/queue", "json": body})
        if body.get("clear"):
            self._pending.clear()
            self._queue_updated()
        for prompt_id in body.get("delete", []):
            for item in self._pending:
                if item[1] == prompt_id:
                    self._pending.remove(item)
                    heapq.heapify(self._pending)
                    self._queue_updated()
                    break
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        self.requests.append({"path": "/interrupt", "json": body})
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if not prompt_id or any(item[1] == prompt_id for item in self._running.values()):
            self._interrupt.set()
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self._history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _get_history_all(self, request: web.Request) -> web.Response:
        items = list(self._history.items())
        max_items = request.query.get("max_items")
        if max_items is not None:
            items = items[-int(max_items) :]
        return web.json_response(dict(items))

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self._history.clear()
        for prompt_id in body.get("delete", []):
            self._history.pop(prompt_id, None)
        return web.Response(status=200)

    async def _set_fault(self, request: web.Request) -> web.Response:
        try:
            self.faults = Faults.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    # ---- HTTP: files ----------------------------------------------------------------------

    def _dir_by_type(self, kind: str | None) -> tuple[Path, str] | None:
        kind = kind or "input"
        folders = {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}
        return (folders[kind], kind) if kind in folders else None

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        target = self._dir_by_type(str(post.get("type") or "input"))
        if target is None:
            return web.Response(status=400)
        upload_dir, kind = target
        subfolder = str(post.get("subfolder", ""))
        folder = Path(os.path.join(upload_dir, os.path.normpath(subfolder)))
        filename = image.filename
        path = Path(os.path.abspath(folder / filename))
        if os.path.commonpath((upload_dir, path)) != str(upload_dir):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        if str(post.get("overwrite")) not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            counter = 1
            while path.exists():
                if path.read_bytes() == data:  # same bytes: reuse, as ComfyUI does
                    return web.json_response(
                        {"name": filename, "subfolder": subfolder, "type": kind}
                    )
                filename = f"{stem} ({counter}){ext}"
                path = folder / filename
                counter += 1
        path.write_bytes(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        target = self._dir_by_type(request.query.get("type", "output"))
        if target is None:
            return web.Response(status=400)
        folder = target[0]
        if "subfolder" in request.query:
            full = Path(os.path.abspath(folder / request.query["subfolder"]))
            if os.path.commonpath((full, folder)) != str(folder):
                return web.Response(status=403)
            folder = full
        path = folder / os.path.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"Content-Disposition": f'filename="{path.name}"', "Content-Type": content_type}
        return web.FileResponse(path, headers=headers)

    # ---- execution ------------------------------------------------------------------------

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt.is_set()

    def check_interrupt(self) -> None:
        """comfy.model_management.throw_exception_if_processing_interrupted."""
        if self._interrupt.is_set():
            self._interrupt.clear()
            raise InterruptProcessingException()

    def _set_state(self, run: _Run, node_id: str, state: str) -> None:
        entry = run.states.setdefault(node_id, {"value": 0.0, "max": 1.0, "state": state})
        entry["state"] = state
        if state == "running":
            entry["value"], entry["max"] = 0.0, 1.0
        else:
            entry["value"] = entry["max"]
        self._emit("progress_state", self._progress_state(run), run.client_id)

    @staticmethod
    def _progress_state(run: _Run) -> dict[str, Any]:
        nodes = {
            nid: {
                "value": s["value"],
                "max": s["max"],
                "state": s["state"],
                "node_id": nid,
                "prompt_id": run.prompt_id,
                "display_node_id": nid,
                "parent_node_id": None,
                "real_node_id": nid,
            }
            for nid, s in run.states.items()
        }
        return {"prompt_id": run.prompt_id, "nodes": nodes}

    def report_progress(
        self, run: _Run, node_id: str, value: float, total: float, preview: Any
    ) -> None:
        """The ProgressBar hook (runs in the node's thread): progress_state, progress, preview."""
        run.states[node_id] = {"value": float(value), "max": float(total), "state": "running"}
        self._emit_threadsafe("progress_state", self._progress_state(run), run.client_id)
        with_metadata = bool(
            self._socket_flags.get(run.client_id or "", {}).get("supports_preview_metadata")
        )
        frame = self._preview_frame(run, node_id, preview, with_metadata) if preview else None
        if frame is not None and with_metadata:
            self._emit_threadsafe(_BINARY, frame, run.client_id)
        progress = {"value": value, "max": total, "prompt_id": run.prompt_id, "node": node_id}
        self._emit_threadsafe("progress", progress, run.client_id)
        if frame is not None and not with_metadata:
            self._emit_threadsafe(_BINARY, frame, run.client_id)

    @staticmethod
    def _preview_frame(run: _Run, node_id: str, preview: Any, with_metadata: bool) -> bytes:
        image_format, image, _max_size = preview
        buffer = io.BytesIO()
        image.save(buffer, format=image_format)
        if with_metadata:
            metadata = json.dumps(
                {
                    "node_id": node_id,
                    "prompt_id": run.prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": f"image/{image_format.lower()}",
                }
            ).encode()
            head = struct.pack(">II", _PREVIEW_IMAGE_WITH_METADATA, len(metadata))
            return head + metadata + buffer.getvalue()
        format_code = 2 if image_format.upper() == "PNG" else 1
        return struct.pack(">II", _PREVIEW_IMAGE, format_code) + buffer.getvalue()

    def _add_message(self, run: _Run, event: str, data: dict[str, Any], broadcast=False) -> None:
        data = {**data, "timestamp": _now_ms()}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self._emit(event, data, run.client_id)

    def _is_changed(self, cls: NodeClass, inputs: dict[str, Any]) -> str:
        fn = getattr(cls, "IS_CHANGED", None)
        if fn is None:
            return ""
        args = function_args(fn)
        arguments = {
            key: value
            for key, value in inputs.items()
            if (key in args or "**" in args) and not is_link(value)
        }
        try:
            result = fn(**arguments)
        except Exception:
            return uuid.uuid4().hex  # ComfyUI uses NaN: never equal, so never cached
        if isinstance(result, float) and math.isnan(result):
            return uuid.uuid4().hex
        return repr(result)

    def _signatures(self, prompt: dict[str, Any]) -> dict[str, str]:
        """Cache keys: class, IS_CHANGED, constant inputs and ancestors' keys (ComfyUI's)."""
        memo: dict[str, str] = {}

        def signature(node_id: str) -> str:
            if node_id in memo:
                return memo[node_id]
            memo[node_id] = "cycle"
            node = prompt[node_id]
            cls = self.node_classes[node["class_type"]]
            inputs = node.get("inputs", {})
            parts: list[Any] = [node["class_type"], self._is_changed(cls, inputs)]
            if getattr(cls, "NOT_IDEMPOTENT", False):
                parts.append(node_id)
            for name in sorted(inputs):
                value = inputs[name]
                if is_link(value) and value[0] in prompt:
                    parts.append([name, signature(value[0]), value[1]])
                else:
                    parts.append([name, value])
            text = json.dumps(parts, sort_keys=True, default=repr)
            memo[node_id] = hashlib.sha256(text.encode()).hexdigest()
            return memo[node_id]

        with self.bound():
            return {node_id: signature(node_id) for node_id in prompt}

    def _node_inputs(self, cls: NodeClass, node_id: str, graph: _Graph) -> dict[str, Any]:
        """Keyword arguments for a node; links not evaluated (yet) are None, as in ComfyUI."""
        inputs = graph.prompt[node_id].get("inputs", {})
        kwargs: dict[str, Any] = {}
        for name in declared_inputs(cls):
            if name not in inputs:
                continue
            value = inputs[name]
            if is_link(value):
                source = graph.values.get(value[0])
                kwargs[name] = source[value[1]] if source is not None else None
            else:
                kwargs[name] = value
        hidden = cls.INPUT_TYPES().get("hidden") or {}
        sources = {
            "PROMPT": graph.prompt,
            "EXTRA_PNGINFO": graph.extra_data.get("extra_pnginfo"),
            "UNIQUE_ID": node_id,
        }
        for name, kind in hidden.items():
            if kind in sources:
                kwargs[name] = sources[kind]
        return kwargs

    def _call_node(
        self, run: _Run, node_id: str, class_type: str, obj: Any, method: str, kwargs: dict
    ) -> Any:
        """Runs in a worker thread, like ComfyUI's prompt worker; faults apply to FUNCTION."""
        with running_in(self, run, node_id):
            self.check_interrupt()  # an interrupt lands when the next node starts
            if method == type(obj).FUNCTION:
                faults = self.faults
                delay = faults.slow.get(node_id, faults.slow.get(class_type))
                if delay:
                    self._closing.wait(delay)
                held = faults.hold.get(node_id, faults.hold.get(class_type))
                while held is not None and not held.wait(0.05) and not self._closing.is_set():
                    pass
                message = faults.fail.get(node_id, faults.fail.get(class_type))
                if message is not None:
                    raise DoubleInjectedError(message)
            return getattr(obj, method)(**kwargs)

    def _call_mapped(
        self, run: _Run, node_id: str, class_type: str, obj: Any, cls: NodeClass, kwargs: dict
    ) -> Any:
        """ComfyUI's list mapping: a list-valued input (from an OUTPUT_IS_LIST output) runs
        the node once per item unless the node sets INPUT_IS_LIST; results are gathered."""
        lists = {k: v for k, v in kwargs.items() if isinstance(v, _ListValue)}
        if not lists or getattr(cls, "INPUT_IS_LIST", False):
            return self._call_node(run, node_id, class_type, obj, cls.FUNCTION, kwargs)
        count = max(len(v) for v in lists.values())
        gathered: list[list[Any]] = []
        ui: dict[str, list[Any]] = {}
        for index in range(count):
            item = {
                k: (v[min(index, len(v) - 1)] if isinstance(v, _ListValue) else v)
                for k, v in kwargs.items()
            }
            result = self._call_node(run, node_id, class_type, obj, cls.FUNCTION, item)
            if isinstance(result, dict):
                for key, values in (result.get("ui") or {}).items():
                    ui.setdefault(key, []).extend(values)
                result = result.get("result", ())
            for position, value in enumerate(tuple(result or ())):
                if len(gathered) <= position:
                    gathered.append([])
                gathered[position].append(value)
        outputs = tuple(_ListValue(values) for values in gathered)
        return {"result": outputs, "ui": ui} if ui else outputs

    async def _execute(self, item: tuple[Any, ...]) -> tuple[bool, list[Any], dict[str, Any]]:
        _number, prompt_id, prompt, extra_data, outputs = item
        self._interrupt.clear()
        run = _Run(prompt_id, extra_data.get("client_id"))
        self._client_id = run.client_id
        self._add_message(run, "execution_start", {"prompt_id": prompt_id})
        signatures = self._signatures(prompt)
        # ComfyUI's classic cache keeps only what the current prompt can use.
        self._cache = {key: v for key, v in self._cache.items() if key in signatures.values()}
        cached = [node_id for node_id in prompt if signatures[node_id] in self._cache]
        self._add_message(run, "execution_cached", {"nodes": cached, "prompt_id": prompt_id})
        graph = _Graph(run, prompt, extra_data, signatures)
        graph.values = {node_id: self._cache[signatures[node_id]][0] for node_id in cached}
        success = True
        for output in sorted(outputs, key=_node_sort_key):
            failure = await self._ensure(graph, output, is_output=True)
            if failure is not None:
                success = False
                self._report_failure(run, prompt, *failure, graph.executed)
                break
        else:
            self._add_message(run, "execution_success", {"prompt_id": prompt_id})
        ui_outputs = {
            node_id: self._cache[signatures[node_id]][1]
            for node_id in prompt
            if signatures[node_id] in self._cache and self._cache[signatures[node_id]][1]
        }
        self._last_node_id = None
        return success, run.messages, ui_outputs

    async def _ensure(
        self, graph: _Graph, node_id: str, is_output: bool = False
    ) -> tuple[str, dict[str, Any]] | None:
        """Run a node after its non-lazy inputs (depth first); the failing node if any.

        As in ComfyUI, cached inputs are not staged (no frames), a cached output node only
        re-sends `executed`, and lazy inputs run only when check_lazy_status asks for them.
        """
        if node_id in graph.done:
            return None
        graph.done.add(node_id)
        cached = graph.signatures[node_id] in self._cache
        if cached and not is_output:
            return None
        cls = self.node_classes[graph.prompt[node_id]["class_type"]]
        inputs = graph.prompt[node_id].get("inputs", {})
        if not cached:
            for name, value in inputs.items():
                if is_link(value) and not input_info(cls, name)[2].get("lazy"):
                    failure = await self._ensure(graph, value[0])
                    if failure is not None:
                        return failure
        while True:
            outcome = await self._execute_node(graph, node_id)
            if outcome is None:
                return None
            if "pending" not in outcome:
                return node_id, outcome
            for name in outcome["pending"]:
                failure = await self._ensure(graph, inputs[name][0])
                if failure is not None:
                    return failure

    async def _execute_node(self, graph: _Graph, node_id: str) -> dict[str, Any] | None:
        """Run one node: None when done, {"pending": [inputs]} for lazy inputs, else failure."""
        run = graph.run
        class_type = graph.prompt[node_id]["class_type"]
        cls = self.node_classes[class_type]
        signature = graph.signatures[node_id]
        if signature in self._cache:
            graph.values[node_id], ui = self._cache[signature]
            if run.client_id is not None:
                message = {"node": node_id, "display_node": node_id, "output": ui}
                self._emit("executed", {**message, "prompt_id": run.prompt_id}, run.client_id)
            self._set_state(run, node_id, "finished")
            return None
        self._set_state(run, node_id, "running")
        with self.bound():
            kwargs = self._node_inputs(cls, node_id, graph)
        if run.client_id is not None:
            self._last_node_id = node_id
            message = {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
            self._emit("executing", message, run.client_id)
        obj = cls()
        try:
            if hasattr(obj, "check_lazy_status"):
                wanted = await asyncio.to_thread(
                    self._call_node, run, node_id, class_type, obj, "check_lazy_status", kwargs
                )
                inputs = graph.prompt[node_id].get("inputs", {})
                pending = [
                    name
                    for name in wanted or []
                    if is_link(inputs.get(name))
                    and inputs[name][0] not in graph.values
                    and inputs[name][0] not in graph.done
                ]
                if pending:
                    return {"pending": pending}
            result = await asyncio.to_thread(
                self._call_mapped, run, node_id, class_type, obj, cls, kwargs
            )
        except InterruptProcessingException:
            return {"interrupted": True}
        except Exception as exc:
            log.error("!!! Exception during processing !!! %s", exc)
            return {
                "exception_message": f"{exc}\n",
                "exception_type": full_type_name(type(exc)),
                "traceback": traceback.format_tb(exc.__traceback__),
                "current_inputs": {name: [format_value(v)] for name, v in kwargs.items()},
            }
        if isinstance(result, dict):
            outputs, ui = tuple(result.get("result", ())), result.get("ui") or None
        else:
            outputs, ui = (tuple(result) if result is not None else ()), None
        is_list = getattr(cls, "OUTPUT_IS_LIST", ())
        outputs = tuple(
            _ListValue(v)
            if i < len(is_list) and is_list[i] and not isinstance(v, _ListValue)
            else v
            for i, v in enumerate(outputs)
        )
        self._cache[signature] = (outputs, ui)
        graph.values[node_id] = outputs
        if ui and run.client_id is not None:
            message = {"node": node_id, "display_node": node_id, "output": ui}
            self._emit("executed", {**message, "prompt_id": run.prompt_id}, run.client_id)
        self._set_state(run, node_id, "finished")
        graph.executed.add(node_id)
        return None

    def _report_failure(
        self,
        run: _Run,
        prompt: dict[str, Any],
        node_id: str,
        failure: dict[str, Any],
        executed: set[str],
    ) -> None:
        base = {
            "prompt_id": run.prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if failure.get("interrupted"):
            self._add_message(run, "execution_interrupted", base, broadcast=True)
            return
        message = {**base, **failure, "current_outputs": list(prompt)}
        self._add_message(run, "execution_error", message)

    async def _worker_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = heapq.heappop(self._pending)
            task_id = self._task_counter
            self._task_counter += 1
            self._running[task_id] = item
            self._queue_updated()
            try:
                success, messages, outputs = await self._execute(item)
            except Exception:  # a bug in the double: record it rather than hang the queue
                log.exception("double failed to execute prompt %s", item[1])
                success, messages, outputs = False, [], {}
            del self._running[task_id]
            self._history[item[1]] = {
                "prompt": list(item),
                "outputs": outputs,
                "status": {
                    "status_str": "success" if success else "error",
                    "completed": success,
                    "messages": messages,
                },
                "meta": {
                    node_id: {
                        "node_id": node_id,
                        "display_node": node_id,
                        "parent_node": None,
                        "real_node_id": node_id,
                    }
                    for node_id in outputs
                },
            }
            self._queue_updated()
            client_id = item[3].get("client_id")
            if client_id is not None:
                self._emit("executing", {"node": None, "prompt_id": item[1]}, client_id)


# --------------------------------------------------------------------------------------------
# Runners: in a background thread (for tests) and as a process (in place of ComfyUI's main.py).


@contextlib.contextmanager
def serve_in_thread(
    double: ComfyDouble, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0
) -> Iterator[ComfyDouble]:
    """Serve `double` from a background thread with its own event loop; yields it started.

    `double.base_url` is set on entry. With a start-up delay the port is chosen up front and
    the context is entered before the server answers.
    """
    if double.startup_delay_s and port == 0:
        port = free_port(host)
        double.base_url = f"http://{host}:{port}"
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    async def begin() -> None:
        try:
            await double.start(host, port)
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        starting = loop.create_task(begin())
        loop.run_forever()
        starting.cancel()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    thread = threading.Thread(target=run, name="comfy-double", daemon=True)
    thread.start()
    if not double.startup_delay_s:
        if not started.wait(timeout_s):
            raise TimeoutError("the ComfyUI double did not start")
        if failure:
            raise failure[0]
    try:
        yield double
    finally:
        asyncio.run_coroutine_threadsafe(double.close(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ComfyUI test double (not ComfyUI). Accepts and ignores other ComfyUI flags."
    )
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base-directory", type=Path)
    parser.add_argument("--input-directory", type=Path)
    parser.add_argument("--output-directory", type=Path)
    parser.add_argument("--temp-directory", type=Path)
    parser.add_argument("--models-directory", type=Path, help="double-only: models folder")
    parser.add_argument("--node-pack", type=Path, action="append", default=[])
    parser.add_argument("--startup-delay", type=float, default=0.0, help="double-only")
    args, ignored = parser.parse_known_args(argv)
    if ignored:
        log.info("ignoring ComfyUI flags the double does not model: %s", " ".join(ignored))
    return args


def main(argv: list[str] | None = None, default_base: Path | None = None) -> int:
    """Run the double as a process until SIGINT or SIGTERM, like ComfyUI's main.py.

    Its folders live under --base-directory, else `default_base`, else the working directory
    (ComfyUI keeps them beside its main.py, which is the working directory under the
    supervisor).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = _parse_args(argv)
    base = args.base_directory or default_base or Path.cwd()
    temp = args.temp_directory / "temp" if args.temp_directory else None
    double = ComfyDouble(
        base,
        input_dir=args.input_directory,
        output_dir=args.output_directory,
        temp_dir=temp,
        models_dir=args.models_directory,
        node_packs=args.node_pack,
        startup_delay_s=args.startup_delay,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("Starting server (ComfyUI test double %s)", DOUBLE_VERSION)
        log.info("input %s, output %s", double.input_dir, double.output_dir)
        await double.start(args.listen, args.port)
        await stop.wait()
        log.info("Stopping server")
        await double.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    # `python -m` runs from the repository root: keep the double's folders out of it.
    sys.exit(main(default_base=Path(tempfile.mkdtemp(prefix="comfy-double-"))))


async def _close(ws: Any) -> None:
    """Close a websocket as a task of its own (aiohttp's close returns a bool)."""
    await ws.close()
