"""Parts of the demo (scripts/demo.py): sample images, child processes, ComfyUI and model
setup, the control-plane and worker processes, the public-API client and the contact sheet.

Modules import each other relatively, so they work both as `demokit` (scripts/ on sys.path,
as when demo.py runs) and as `scripts.demokit` (the repository root on sys.path, as in tests).
"""
