"""The node pack's image operations in torch, on the device of their input tensors.

Colour images are float32 HxWxC in 0..1, alpha and masks HxW. CUDA when the model that made
the mask runs there, else the CPU; pixel data never goes to the host inside an op (a few
scalar syncs for bounding boxes are marked where they happen). The numpy versions they were
ported from are kept in tests/reference_ops and checked for parity there.
"""
