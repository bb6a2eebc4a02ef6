"""SimplyPNG ComfyUI node pack: background removal, cutout, object removal, layout, resizing.

ComfyUI imports this folder from custom_nodes/ and reads NODE_CLASS_MAPPINGS.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
