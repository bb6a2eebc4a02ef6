"""SimplyPNG worker: runs SimplyPNG jobs through a local ComfyUI server."""

__version__ = "0.1.0"
