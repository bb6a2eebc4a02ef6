"""Which of a job's inputs go to ComfyUI together, as one batch through the model.

Inputs of the same size and channel count share one prompt: the segmenter then runs them as
one forward pass (it falls back to one at a time on out-of-memory). A batch holds at most
`max_pixels` pixels, so a job of large inputs does not multiply ComfyUI's float memory.
Pure logic: shapes in, groups of input indices out, in input order.
"""

from __future__ import annotations

Shape = tuple[int, int, int]  # height, width, channels


def batches(shapes: list[Shape], max_pixels: int) -> list[list[int]]:
    """Groups of indices with equal shapes, each within max_pixels (one image always fits)."""
    groups: list[list[int]] = []
    open_group: dict[Shape, list[int]] = {}
    for index, shape in enumerate(shapes):
        group = open_group.get(shape)
        pixels = shape[0] * shape[1]
        if group is None or (len(group) + 1) * pixels > max_pixels:
            group = []
            groups.append(group)
            open_group[shape] = group
        group.append(index)
    return groups
