"""Versioned parameter specs for each processing type.

Each type maps `params.v` to a pydantic model whose defaults are the documented defaults.
The control plane validates with these same models, so API and worker reject the same input.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handler.errors import ErrorCode, JobError

HEX_COLOUR = re.compile(r"^#?[0-9a-fA-F]{6}$")


class _Spec(BaseModel):
    # strict: "3" is not a number and "yes" is not a boolean; wrong types are refused.
    model_config = ConfigDict(extra="forbid", strict=True)

    v: Literal[1] = 1


Segmenter = Literal["birefnet", "u2netp"]


class SegmenterMixin(BaseModel):
    segmenter: Segmenter = Field(
        "birefnet",
        description="Segmentation model. birefnet (default): BiRefNet general at 1024², the best "
        "edges (hair, glass, fine detail), for GPU workers. u2netp: U²-Net small at 320², about "
        "20x cheaper, clean on simple product shots, the one a CPU worker can serve.",
    )


class ShadowMixin(BaseModel):
    shadow_offset_x: int = Field(12, ge=-500, le=500, description="Shadow x offset in px.")
    shadow_offset_y: int = Field(18, ge=-500, le=500, description="Shadow y offset in px.")
    shadow_opacity: float = Field(0.5, ge=0.0, le=1.0, description="Shadow opacity.")
    shadow_blur: float = Field(12.0, ge=0.0, le=200.0, description="Shadow blur radius in px.")


class BgRemoveV1(_Spec, SegmenterMixin, ShadowMixin):
    halo: int = Field(2, ge=0, le=10, description="Edge refinement radius in px (decontamination).")
    shadow: Literal["none", "soft", "hard", "drop"] = "none"
    output_format: Literal["png", "webp"] = "png"


class CutoutSubjectV1(_Spec, SegmenterMixin):
    halo: int = Field(2, ge=0, le=10)
    padding: float = Field(4.0, ge=0, le=1000, description="Padding around the subject.")
    padding_unit: Literal["px", "percent"] = "percent"
    square: bool = Field(False, description="Pad the crop to a square canvas.")
    min_size: int = Field(0, ge=0, le=8192, description="Minimum long side of the output in px.")
    min_region: int = Field(
        64, ge=0, le=1_000_000, description="Drop disconnected specks smaller than this (px area)."
    )
    output_format: Literal["png", "webp"] = "png"


MAX_COORD = 65535.0


class RectRegion(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["rect"] = "rect"
    x: float = Field(ge=0, le=MAX_COORD)
    y: float = Field(ge=0, le=MAX_COORD)
    w: float = Field(gt=0, le=MAX_COORD)
    h: float = Field(gt=0, le=MAX_COORD)


Coordinate = Annotated[float, Field(ge=0, le=MAX_COORD)]


class PolygonRegion(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["polygon"] = "polygon"
    points: list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] = Field(
        min_length=3, max_length=256, description="[[x, y], ...]"
    )


Region = Annotated[RectRegion | PolygonRegion, Field(discriminator="kind")]


class ObjectRemoveV1(_Spec):
    regions: list[Region] = Field(default_factory=list, max_length=64)
    units: Literal["px", "normalized"] = "px"
    mask_url: str | None = Field(
        None, description="https:// or data: URL of a mask image (white = remove)."
    )
    dilate: int = Field(8, ge=0, le=128, description="Grow the mask by this many px.")
    output_format: Literal["png", "webp", "jpeg"] = "png"

    @field_validator("mask_url")
    @classmethod
    def _public_mask(cls, value: str | None) -> str | None:
        # s3:// would be read with the worker's own credentials: any bucket it can reach.
        if value is not None and not value[:8].lower().startswith(("https://", "http://", "data:")):
            raise ValueError("mask_url must be an https:// or data: URL")
        return value

    @model_validator(mode="after")
    def _needs_a_region(self) -> ObjectRemoveV1:
        if not self.regions and not self.mask_url:
            raise ValueError("give regions or mask_url")
        if self.units == "normalized":
            for region in self.regions:
                coords = (
                    [region.x + region.w, region.y + region.h]
                    if isinstance(region, RectRegion)
                    else [c for point in region.points for c in point]
                )
                if any(c > 1.0 for c in coords):
                    raise ValueError("normalized coordinates must lie in 0..1")
        return self


class WhiteBgEcommV1(_Spec, SegmenterMixin):
    fill: float = Field(
        0.85, ge=0.3, le=1.0, description="Fraction of the canvas the subject fills."
    )
    canvas_width: int = Field(2000, ge=256, le=8192)
    canvas_height: int = Field(2000, ge=256, le=8192)
    shadow: bool = Field(False, description="Add a soft contact shadow under the subject.")
    output_format: Literal["jpeg", "png"] = "png"

    @model_validator(mode="after")
    def _long_side(self) -> WhiteBgEcommV1:
        if max(self.canvas_width, self.canvas_height) < 1000:
            raise ValueError("canvas_width/canvas_height: the long side must be at least 1000 px")
        return self


class Upscale2kV1(_Spec):
    target: int = Field(2048, ge=256, le=8192, description="Exact long edge of the output in px.")
    output_format: Literal["png", "webp", "jpeg"] = "png"


class JpegToPngV1(_Spec, SegmenterMixin):
    transparent: Literal["none", "color", "subject"] = Field(
        "none",
        description="none: the input's own alpha is kept (opaque when it has none); color: "
        "the key colour becomes transparent; subject: the segmented subject is kept. color and "
        "subject compute a new alpha and replace the input's.",
    )
    key_color: str = Field("#ffffff", description="Colour keyed out when transparent=color.")
    tolerance: int = Field(16, ge=0, le=255, description="Colour distance keyed fully out.")
    softness: int = Field(16, ge=0, le=255, description="Extra distance over which alpha ramps.")
    output_format: Literal["png"] = "png"

    @field_validator("key_color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not HEX_COLOUR.match(value):
            raise ValueError("key_color must be a #rrggbb colour")
        return "#" + value.lstrip("#").lower()


PARAM_SPECS: dict[str, dict[int, type[_Spec]]] = {
    "bg_remove": {1: BgRemoveV1},
    "cutout_subject": {1: CutoutSubjectV1},
    "object_remove": {1: ObjectRemoveV1},
    "white_bg_ecomm": {1: WhiteBgEcommV1},
    "upscale_2k": {1: Upscale2kV1},
    "jpeg_to_png": {1: JpegToPngV1},
}


def param_names(job_type: str) -> set[str]:
    """Every param any version of the type's spec declares, `v` excluded."""
    return {name for spec in PARAM_SPECS[job_type].values() for name in spec.model_fields} - {"v"}


def validate_params(job_type: str, params: dict[str, Any] | None) -> BaseModel:
    """Validate params for a type; raise INVALID_PARAMS naming the field."""
    raw = dict(params or {})
    specs = PARAM_SPECS.get(job_type)
    if specs is None:
        raise JobError(ErrorCode.INVALID_PAYLOAD, f"unknown type {job_type!r}")
    version = raw.get("v", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in specs:
        raise JobError(
            ErrorCode.INVALID_PARAMS,
            f"params.v: unknown version {version!r} for {job_type} (known: {sorted(specs)})",
            {"field": "params.v"},
        )
    try:
        return specs[version].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "params." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "params"
        raise JobError(
            ErrorCode.INVALID_PARAMS, f"{field}: {first['msg']}", {"field": field}
        ) from None
