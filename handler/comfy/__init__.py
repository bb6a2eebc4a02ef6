"""The local ComfyUI server: its process (supervisor) and its HTTP/websocket API (client)."""

from handler.comfy.client import ComfyClient, ImageRef, Progress, PromptResult
from handler.comfy.supervisor import ComfyStartError, ComfySupervisor

__all__ = [
    "ComfyClient",
    "ComfyStartError",
    "ComfySupervisor",
    "ImageRef",
    "Progress",
    "PromptResult",
]
