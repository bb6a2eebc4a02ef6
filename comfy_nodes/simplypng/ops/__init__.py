"""Pure image operations behind the SimplyPNG nodes.

Every function takes and returns numpy arrays: colour images float32 HxWxC in 0..1, alpha and
masks float32 HxW in 0..1 (or bool). Nothing here imports torch or ComfyUI, so it is tested
directly on synthetic images with known ground truth.
"""
