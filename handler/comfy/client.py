"""Async client for a local ComfyUI server, speaking only ComfyUI's HTTP and websocket API.

One prompt = one websocket with its own clientId, opened before the prompt is queued so that
no frame is missed. The wait has a hard deadline; a dropped or silent socket is reconciled
through GET /history and reconnected; a timed-out or cancelled prompt is removed from the
queue and interrupted. Every failure surfaces as a JobError with a public, one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from handler.errors import ErrorCode, JobError, one_line

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024 * 1024  # preview frames can be large; we only skip them
CLEANUP_TIMEOUT_S = 5.0
RECONNECT_ATTEMPTS = 5
RECONNECT_BACKOFF_S = (0.1, 0.3, 1.0, 2.0, 3.0)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s'\"/:]+)+/([^\s'\"/]+)")


@dataclass(frozen=True)
class ImageRef:
    """One file a node wrote, as ComfyUI reports it (GET /view arguments)."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRef:
        subfolder, kind = str(data.get("subfolder") or ""), str(data.get("type") or "output")
        return cls(str(data["filename"]), subfolder, kind)


def _image_refs(ui: Any) -> list[ImageRef]:
    """ImageRefs from a node's UI output ({"images": [...]}); malformed entries are skipped."""
    images = ui.get("images") if isinstance(ui, dict) else None
    return [
        ImageRef.from_json(image)
        for image in images or []
        if isinstance(image, dict) and image.get("filename")
    ]


@dataclass(frozen=True)
class Progress:
    """A progress report: the running node, its own value/max, and the prompt's fraction done.

    fraction counts finished, non-cached nodes plus the running node's share; an estimate.
    """

    node: str | None
    value: float
    max: float
    fraction: float


@dataclass
class PromptResult:
    prompt_id: str
    outputs: dict[str, list[ImageRef]]
    cached_nodes: list[str] = field(default_factory=list)
    # queue_s: POST /prompt to execution_start; execute_s: execution_start to the end.
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Follow:
    """What the websocket told us so far about one prompt."""

    prompt_id: str
    total_nodes: int
    socket: ClientConnection
    posted_at: float
    started_at: float | None = None
    outcome: str | None = None  # execution_success | execution_error | execution_interrupted
    error: dict[str, Any] | None = None
    outputs: dict[str, list[ImageRef]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    finished: set[str] = field(default_factory=set)
    node: str | None = None
    gap: bool = False  # frames may have been lost (reconnected): trust /history at the end


class ComfyClient:
    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        idle_timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url[len("http") :] + "/ws"
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._owns_http = http is None
        # ComfyUI is local: never route it through an environment proxy.
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=connect_timeout_s), trust_env=False
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ---- plain HTTP -----------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE,
                f"ComfyUI could not be reached ({method} {path}: {type(exc).__name__})",
            ) from exc
        if response.status_code >= 500:
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE,
                f"ComfyUI answered HTTP {response.status_code} to {method} {path}",
            )
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise JobError(
                ErrorCode.INTERNAL_ERROR,
                f"ComfyUI answered HTTP {response.status_code} to {method} {path}",
            )
        try:
            return response.json()
        except ValueError as exc:
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE, f"ComfyUI sent invalid JSON for {method} {path}"
            ) from exc

    async def system_stats(self) -> dict[str, Any]:
        return await self._json("GET", "/system_stats")

    async def object_info(self) -> dict[str, Any]:
        return await self._json("GET", "/object_info")

    async def comfyui_version(self) -> str | None:
        stats = await self.system_stats()
        version = (stats.get("system") or {}).get("comfyui_version")
        return str(version) if version is not None else None

    async def upload_image(self, data: bytes, filename: str, subfolder: str) -> str:
        """Upload into ComfyUI's input folder (overwriting); returns LoadImage's `image` value."""
        response = await self._request(
            "POST",
            "/upload/image",
            files={"image": (filename, data, "application/octet-stream")},
            data={"subfolder": subfolder, "type": "input", "overwrite": "true"},
        )
        if response.status_code == 413:
            raise JobError(ErrorCode.INPUT_TOO_LARGE, "The input exceeds ComfyUI's upload limit")
        if response.status_code != 200:
            raise JobError(
                ErrorCode.INTERNAL_ERROR,
                f"ComfyUI refused the upload of {filename!r} (HTTP {response.status_code})",
            )
        try:
            body = response.json()
            name, folder = str(body["name"]), str(body.get("subfolder") or "")
        except (ValueError, KeyError, TypeError) as exc:
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE, "ComfyUI sent an unreadable upload answer"
            ) from exc
        return f"{folder}/{name}" if folder else name

    async def download_output(self, ref: ImageRef) -> bytes:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        response = await self._request("GET", "/view", params=params)
        if response.status_code != 200:
            raise JobError(
                ErrorCode.INTERNAL_ERROR,
                f"ComfyUI has no output {ref.filename!r} (HTTP {response.status_code})",
            )
        return response.content

    async def history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry, or {} while it has not finished (or is unknown)."""
        body = await self._json("GET", f"/history/{prompt_id}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else {}

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt this prompt if it is the one running (ComfyUI ignores it otherwise)."""
        await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove prompts that have not started yet; running ones need interrupt()."""
        await self._request("POST", "/queue", json={"delete": list(prompt_ids)})

    # ---- running a prompt -----------------------------------------------------------------

    async def run_prompt(
        self,
        prompt: dict[str, Any],
        *,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> PromptResult:
        """Queue `prompt`, follow it to its end and return its outputs.

        Raises JobError: WORKFLOW_INVALID, NODE_ERROR, COMFYUI_UNAVAILABLE, TIMEOUT (after
        removing and interrupting the prompt), CANCELLED (interrupted by someone else).
        asyncio.CancelledError is re-raised after the prompt was removed and interrupted.
        """
        prompt_id = str(uuid.uuid4())
        client_id = uuid.uuid4().hex
        queued = False  # from here on, ComfyUI may hold the prompt
        try:
            async with asyncio.timeout(timeout_s):
                socket = await self._connect(client_id)
                follow = _Follow(prompt_id, len(prompt), socket, time.monotonic())
                try:
                    queued = True
                    await self._queue_prompt(prompt, prompt_id, client_id)
                    return await self._follow(follow, client_id, on_progress)
                finally:
                    await follow.socket.close()  # the latest one, after reconnects
        except TimeoutError:
            if queued:
                await self._abandon(prompt_id)
            raise JobError(
                ErrorCode.TIMEOUT, f"The prompt did not finish within {timeout_s:g} s"
            ) from None
        except asyncio.CancelledError:
            if queued:
                # Shielded so that the clean-up completes although our task is being cancelled.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(self._abandon(prompt_id))
            raise
        except JobError as exc:
            if queued and exc.code is ErrorCode.COMFYUI_UNAVAILABLE:
                await self._abandon(prompt_id)  # the prompt may be queued: do not leave it behind
            raise

    async def _abandon(self, prompt_id: str) -> None:
        """Best effort: drop the prompt if still queued, then interrupt it if it runs."""
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await self.delete_queued([prompt_id])
                await self.interrupt(prompt_id)
        except (JobError, TimeoutError) as exc:
            log.warning(
                "could not remove the prompt from ComfyUI",
                extra={"prompt_id": prompt_id, "error": str(exc)},
            )

    async def _connect(self, client_id: str) -> ClientConnection:
        """Open the websocket and wait for ComfyUI's first `status` frame."""
        url = f"{self.ws_url}?clientId={client_id}"
        try:
            ws = await connect(
                url,
                open_timeout=self.connect_timeout_s,
                max_size=MAX_FRAME_BYTES,
                close_timeout=1.0,
                proxy=None,
                compression=None,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE,
                f"ComfyUI's websocket could not be opened ({type(exc).__name__})",
            ) from exc
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                while True:
                    message = _parse(await ws.recv())
                    if message and message[0] == "status":
                        return ws
        except (ConnectionClosed, TimeoutError) as exc:
            await ws.close()
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE, "ComfyUI's websocket sent no status frame"
            ) from exc

    async def _queue_prompt(self, prompt: dict[str, Any], prompt_id: str, client_id: str) -> None:
        body = {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}
        response = await self._request("POST", "/prompt", json=body)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 400:
            message, details = describe_rejection(answer if answer is not None else response.text)
            raise JobError(ErrorCode.WORKFLOW_INVALID, message, details)
        if response.status_code != 200 or not isinstance(answer, dict):
            raise JobError(
                ErrorCode.COMFYUI_UNAVAILABLE,
                f"ComfyUI answered HTTP {response.status_code} to POST /prompt",
            )
        if answer.get("node_errors"):
            # Queued with the invalid branches skipped: refuse rather than return partial output.
            await self._abandon(prompt_id)
            message, details = describe_rejection(answer)
            raise JobError(ErrorCode.WORKFLOW_INVALID, message, details)

    async def _follow(
        self,
        follow: _Follow,
        client_id: str,
        on_progress: Callable[[Progress], None] | None,
    ) -> PromptResult:
        while True:
            try:
                raw = await asyncio.wait_for(follow.socket.recv(), self.idle_timeout_s)
            except (TimeoutError, ConnectionClosed) as exc:
                reason = "silent" if isinstance(exc, TimeoutError) else "closed"
                log.info(
                    "websocket lost; checking /history",
                    extra={"reason": reason, "prompt_id": follow.prompt_id},
                )
                result = await self._reconcile(follow)
                if result is not None:
                    return result
                await follow.socket.close()
                follow.socket = await self._reconnect(client_id)
                follow.gap = True
                # Anything that finished while we were away is in /history now.
                result = await self._reconcile(follow)
                if result is not None:
                    return result
                continue
            message = _parse(raw)
            if message is None:
                continue  # binary preview frames and anything unreadable
            if self._apply(follow, *message, on_progress):
                if follow.outcome is None or follow.gap:
                    result = await self._reconcile(follow)
                    if result is not None:
                        return result
                    raise JobError(
                        ErrorCode.COMFYUI_UNAVAILABLE,
                        "ComfyUI finished the prompt but recorded no outcome",
                    )
                return self._decide(follow, follow.outcome, follow.error, follow.outputs)

    async def _reconnect(self, client_id: str) -> ClientConnection:
        last: JobError | None = None
        for delay in RECONNECT_BACKOFF_S[:RECONNECT_ATTEMPTS]:
            try:
                return await self._connect(client_id)
            except JobError as exc:
                last = exc
                await asyncio.sleep(delay)
        assert last is not None
        raise last

    def _apply(
        self,
        follow: _Follow,
        kind: str,
        data: dict[str, Any],
        on_progress: Callable[[Progress], None] | None,
    ) -> bool:
        """Fold one frame into `follow`; True when it ends the prompt (executing null)."""
        prompt_id = data.get("prompt_id")
        if prompt_id is not None and prompt_id != follow.prompt_id:
            return False
        if kind == "executing":
            if data.get("node") is None:
                return prompt_id == follow.prompt_id
            # On reconnect ComfyUI repeats the running node without a prompt_id.
            follow.node = str(data["node"])
            self._report(follow, on_progress, 0.0, 1.0)
        elif prompt_id is None:
            return False
        elif kind == "execution_start":
            follow.started_at = time.monotonic()
        elif kind == "execution_cached":
            follow.cached = [str(node) for node in data.get("nodes") or []]
        elif kind == "progress":
            follow.node = str(data.get("node") or follow.node)
            value, maximum = _number(data.get("value")), _number(data.get("max"))
            self._report(follow, on_progress, value, maximum)
        elif kind == "progress_state":
            nodes = data.get("nodes")
            if isinstance(nodes, dict):
                finished = (
                    n
                    for n, s in nodes.items()
                    if isinstance(s, dict) and s.get("state") == "finished"
                )
                follow.finished = set(finished)
        elif kind == "executed":
            images = _image_refs(data.get("output"))
            if images:
                follow.outputs[str(data.get("node"))] = images
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            follow.outcome = kind
            follow.error = data
        return False

    @staticmethod
    def _report(
        follow: _Follow,
        on_progress: Callable[[Progress], None] | None,
        value: float,
        maximum: float,
    ) -> None:
        if on_progress is None:
            return
        todo = max(1, follow.total_nodes - len(follow.cached))
        done = len(follow.finished - set(follow.cached) - {follow.node})
        share = value / maximum if maximum > 0 else 0.0
        fraction = min(1.0, (done + share) / todo)
        try:
            on_progress(Progress(follow.node, value, maximum, fraction))
        except Exception:  # a progress consumer must never fail the job
            log.exception("progress callback failed")

    async def _reconcile(self, follow: _Follow) -> PromptResult | None:
        """Decide from GET /history; None while the prompt has not finished."""
        entry = await self.history(follow.prompt_id)
        if not entry:
            return None
        status = entry.get("status") or {}
        messages = {
            message[0]: message[1]
            for message in status.get("messages") or []
            if isinstance(message, list) and len(message) == 2
        }
        if "execution_cached" in messages:
            follow.cached = [str(node) for node in messages["execution_cached"].get("nodes", [])]
        if "execution_interrupted" in messages:
            outcome = "execution_interrupted"
        elif "execution_error" in messages or status.get("status_str") == "error":
            outcome = "execution_error"
        else:
            outcome = "execution_success"
        end = messages.get(outcome, {})
        start = messages.get("execution_start", {})
        if follow.started_at is None and "timestamp" in start and "timestamp" in end:
            # Timestamps are the server's clock: only their difference is used.
            follow.started_at = time.monotonic() - (end["timestamp"] - start["timestamp"]) / 1000
        outputs = {
            str(node_id): refs
            for node_id, ui in (entry.get("outputs") or {}).items()
            if (refs := _image_refs(ui))
        }
        return self._decide(follow, outcome, end, outputs)

    @staticmethod
    def _decide(
        follow: _Follow,
        outcome: str | None,
        data: dict[str, Any] | None,
        outputs: dict[str, list[ImageRef]],
    ) -> PromptResult:
        if outcome == "execution_error":
            raise node_error(data or {})
        if outcome == "execution_interrupted":
            raise JobError(ErrorCode.CANCELLED, "ComfyUI interrupted the prompt")
        now = time.monotonic()
        started = follow.started_at if follow.started_at is not None else now
        timings = {"queue_s": max(0.0, started - follow.posted_at), "execute_s": now - started}
        return PromptResult(follow.prompt_id, outputs, list(follow.cached), timings)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _parse(raw: str | bytes) -> tuple[str, dict[str, Any]] | None:
    if isinstance(raw, bytes):
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        return None
    return str(message.get("type")), message["data"]


def scrub_paths(text: str) -> str:
    """Keep only the last part of absolute paths: messages go to API clients."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


def node_error(data: dict[str, Any]) -> JobError:
    """JobError(NODE_ERROR) from an execution_error payload; the traceback stays out."""
    node_id = str(data.get("node_id", "?"))
    node_type = str(data.get("node_type", "?"))
    exception_type = str(data.get("exception_type", "Exception"))
    text = scrub_paths(one_line(str(data.get("exception_message") or "no message").strip()))
    details = {
        "node_id": node_id,
        "node_type": node_type,
        "exception_type": exception_type,
        "message": text,
    }
    return JobError(
        ErrorCode.NODE_ERROR,
        f"Node {node_id} ({node_type}) failed: {exception_type}: {text}",
        details,
    )


def describe_rejection(body: Any) -> tuple[str, dict[str, Any]]:
    """One-line message and compact details from POST /prompt's error body (400, node_errors)."""
    if not isinstance(body, dict):
        return f"ComfyUI rejected the workflow: {one_line(str(body), 200)}", {}
    error = body.get("error")
    node_errors = body.get("node_errors") or {}
    headlines, kind = [], None
    if isinstance(error, dict):
        headline = str(error.get("message") or error.get("type") or "invalid prompt")
        if not node_errors and error.get("details"):
            headline += f" ({error['details']})"
        headlines, kind = [headline], error.get("type")
    elif error:
        headlines = [str(error)]
    parts, compact = [], []
    for node_id, info in node_errors.items():
        errors = [e for e in (info or {}).get("errors") or [] if isinstance(e, dict)]
        class_type = (info or {}).get("class_type", "?")
        summary = [
            {"type": e.get("type"), "message": e.get("message"), "details": e.get("details")}
            for e in errors
        ]
        compact.append({"node_id": str(node_id), "class_type": class_type, "errors": summary})
        if errors:
            first = errors[0]
            detail = f" ({first['details']})" if first.get("details") else ""
            parts.append(f"node {node_id} ({class_type}): {first.get('message')}{detail}")
    message = "ComfyUI rejected the workflow: " + "; ".join([*headlines, *parts])
    return scrub_paths(one_line(message)), {"error_type": kind, "node_errors": compact}
