"""Exceptions the nodes raise for bad input; ComfyUI reports them as execution errors."""


class SimplyPNGError(ValueError):
    """Base class: the input cannot be processed as asked (not a bug)."""


class NoSubjectError(SimplyPNGError):
    """The segmentation found no visible subject to crop or lay out."""


class InvalidRegionsError(SimplyPNGError):
    """The object_remove regions are not valid JSON regions."""


class InvalidColourError(SimplyPNGError):
    """A colour is not a #rrggbb hex string."""
