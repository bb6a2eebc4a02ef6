"""Error codes returned to callers, one exception type carrying each."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    INVALID_PARAMS = "INVALID_PARAMS"
    CALLBACK_KEY_MISSING = "CALLBACK_KEY_MISSING"
    INPUT_FORBIDDEN_URL = "INPUT_FORBIDDEN_URL"
    INPUT_FETCH_FAILED = "INPUT_FETCH_FAILED"
    INPUT_TOO_LARGE = "INPUT_TOO_LARGE"
    INPUT_NOT_IMAGE = "INPUT_NOT_IMAGE"
    WORKFLOW_INVALID = "WORKFLOW_INVALID"
    NODE_ERROR = "NODE_ERROR"
    NO_SUBJECT = "NO_SUBJECT"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    COMFYUI_UNAVAILABLE = "COMFYUI_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUTPUT_UPLOAD_FAILED = "OUTPUT_UPLOAD_FAILED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_PAYLOAD: "The job payload does not match the contract (type, fields, job_id, "
    "inputs, timeout_s).",
    ErrorCode.INVALID_PARAMS: "params do not match the type's versioned spec; the message names "
    "the field.",
    ErrorCode.CALLBACK_KEY_MISSING: "No usable callback key: auth.callback_hmac is shorter than "
    "32 bytes and CALLBACK_SECRET is unset. Nothing was processed.",
    ErrorCode.INPUT_FORBIDDEN_URL: "An input URL uses a refused scheme or resolves to a private, "
    "loopback, link-local or metadata address.",
    ErrorCode.INPUT_FETCH_FAILED: "An input could not be downloaded (HTTP error, timeout, DNS, S3).",
    ErrorCode.INPUT_TOO_LARGE: "An input exceeds the byte cap or the pixel (decompression bomb) cap.",
    ErrorCode.INPUT_NOT_IMAGE: "An input is not a decodable image.",
    ErrorCode.WORKFLOW_INVALID: "ComfyUI rejected the workflow (HTTP 400 or non-empty node_errors).",
    ErrorCode.NODE_ERROR: "A ComfyUI node raised during execution; details name the node.",
    ErrorCode.NO_SUBJECT: "No subject was found in the image (cutout and e-commerce layout).",
    ErrorCode.MODEL_UNAVAILABLE: "The job asks for a model this worker does not serve (e.g. "
    "segmenter birefnet on a lite worker that serves u2netp only). Nothing was processed.",
    ErrorCode.COMFYUI_UNAVAILABLE: "The local ComfyUI server could not be reached.",
    ErrorCode.TIMEOUT: "The job ran past timeout_s; the prompt was interrupted.",
    ErrorCode.CANCELLED: "The job was cancelled; the prompt was interrupted.",
    ErrorCode.OUTPUT_UPLOAD_FAILED: "An output could not be stored after retries.",
    ErrorCode.INTERNAL_ERROR: "An unexpected worker error. No internals are exposed.",
}


class JobError(Exception):
    """A job failure with a public code and a one-line public message.

    The message is shown to API clients: it must never hold secrets or tracebacks.
    """

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = one_line(message)
        self.details = details or {}


def one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace so messages stay single-line and bounded."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# Our node pack raises these for input it cannot process; they are the caller's problem,
# not a worker fault, so they get their own codes (matched by class name: ComfyUI reports
# the dotted type with whatever module path the pack was imported under).
NODE_EXCEPTION_CODES: dict[str, ErrorCode] = {
    "NoSubjectError": ErrorCode.NO_SUBJECT,
    "InvalidRegionsError": ErrorCode.INVALID_PARAMS,
    "InvalidColourError": ErrorCode.INVALID_PARAMS,
}


def classify_node_error(error: JobError) -> JobError:
    """Re-code a NODE_ERROR raised by one of our node pack's input errors."""
    if error.code is not ErrorCode.NODE_ERROR:
        return error
    name = str(error.details.get("exception_type") or "").rsplit(".", 1)[-1]
    code = NODE_EXCEPTION_CODES.get(name)
    if code is None:
        return error
    return JobError(code, error.message, error.details)
