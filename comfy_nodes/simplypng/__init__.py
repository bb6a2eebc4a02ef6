"""SimplyPNG ComfyUI node pack: background removal, cutout, object removal, layout, resizing.

ComfyUI imports this folder from custom_nodes/ and reads NODE_CLASS_MAPPINGS.
"""

from . import nodes, raw_nodes

NODE_CLASS_MAPPINGS = {**nodes.NODE_CLASS_MAPPINGS, **raw_nodes.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {
    **nodes.NODE_DISPLAY_NAME_MAPPINGS,
    **raw_nodes.NODE_DISPLAY_NAME_MAPPINGS,
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
