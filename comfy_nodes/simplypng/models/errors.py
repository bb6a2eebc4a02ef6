"""The two failures model code raises; both are RuntimeErrors with a message meant for logs."""

from __future__ import annotations


class ModelFileError(RuntimeError):
    """A model file is missing, not pinned, the wrong size or checksum, or cannot be loaded."""


class InferenceError(RuntimeError):
    """A loaded model could not run (out of memory after every fallback, unexpected output)."""
