"""Object removal: region masks, crops at model resolution, exact paste-back.

The inpainter here is a plain function standing in for the model: the ops layer only needs
"something that fills the masked pixels", and the test checks what the ops do around it.
"""

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageDraw
from simplypng.ops.crop_boxes import crop_boxes, model_size
from simplypng.ops.errors import InvalidRegionsError
from simplypng.ops.rasterize import CLIP_MARGIN, clip_polygon, parse_regions, rasterize_regions

from tests.reference_ops.inpaint import remove_objects
from tests.reference_ops.regions import dilate, mask_from_image


class FillGrey:
    """Fills the masked pixels with grey and records the sizes it was given."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert image.shape[:2] == mask.shape and set(np.unique(mask)) <= {0.0, 1.0}
        self.sizes.append(image.shape[:2])
        return np.where(mask[..., None] > 0, 0.5, image).astype(np.float32)


def _photo(height: int, width: int) -> np.ndarray:
    """Random 8-bit-derived pixels, as LoadImage would give them."""
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return pixels.astype(np.float32) / 255.0


def test_pixels_outside_the_mask_are_bit_identical():
    image = _photo(1000, 1500)
    mask = np.zeros((1000, 1500), bool)
    mask[300:700, 400:1000] = True  # a 600 x 400 object: its crop must be shrunk for the model
    fake = FillGrey()
    out = remove_objects(image, mask, fake, resolution=512)
    assert np.array_equal(out[~mask], image[~mask])
    as_bytes = lambda a: (a * 255.0).astype(np.uint8)  # noqa: E731 - SaveImage's conversion
    assert np.array_equal(as_bytes(out)[~mask], as_bytes(image)[~mask])
    inner = np.zeros_like(mask)
    inner[310:690, 410:990] = True  # away from the edge, where resampling mixes in context
    np.testing.assert_allclose(out[inner], 0.5, atol=0.02)
    ((height, width),) = fake.sizes
    assert max(height, width) <= 512 and height % 8 == 0 and width % 8 == 0


def test_empty_mask_returns_the_image_without_calling_the_model():
    image = _photo(50, 60)
    fake = FillGrey()
    out = remove_objects(image, np.zeros((50, 60), bool), fake)
    assert np.array_equal(out, image) and fake.sizes == []


def test_far_apart_regions_get_their_own_crops_and_close_ones_share_one():
    mask = np.zeros((400, 400), bool)
    mask[10:20, 10:20] = True
    mask[370:380, 370:380] = True
    assert len(crop_boxes(mask, context=0.5)) == 2
    mask[25:35, 25:35] = True  # its context overlaps the first one's
    boxes = crop_boxes(mask, context=0.5)
    assert len(boxes) == 2 and boxes[0][:2] == (0, 0)
    fake = FillGrey()
    out = remove_objects(_photo(400, 400), mask, fake)
    assert len(fake.sizes) == 2
    np.testing.assert_array_equal(out[mask], 0.5)  # small crops are padded, not resampled
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in fake.sizes)


def test_a_speckled_mask_is_one_bounded_crop():
    mask = np.zeros((300, 300), bool)
    mask[10:290:8, 10:290:8] = True  # 35 x 35 separate dots
    assert crop_boxes(mask, context=0.5) == [(0, 0, 300, 300)]


def test_model_size_for_shrunk_crops():
    assert model_size(2000, 1000, 512) == (512, 256)
    assert model_size(1000, 700, 512) == (512, 360)


def test_an_inpainter_returning_the_wrong_shape_is_an_error():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(ValueError, match="inpainter returned shape"):
        remove_objects(_photo(40, 40), mask, lambda image, m: image[:8])


def test_rects_cover_every_touched_pixel_in_px_and_normalized_units():
    px = rasterize_regions([{"kind": "rect", "x": 2.5, "y": 1, "w": 3, "h": 2}], "px", 10, 8)
    assert np.argwhere(px).min(axis=0).tolist() == [1, 2]
    assert np.argwhere(px).max(axis=0).tolist() == [2, 5]
    norm = rasterize_regions([{"x": 0.5, "y": 0.5, "w": 0.5, "h": 0.25}], "normalized", 10, 8)
    assert norm.sum() == 5 * 2 and norm[4:6, 5:].all()


def test_polygons_are_filled():
    triangle = {"kind": "polygon", "points": [[0, 0], [9, 0], [0, 9]]}
    mask = rasterize_regions([triangle], "px", 10, 10)
    assert mask[0, 0] and mask[1, 1] and not mask[9, 9]
    assert 45 <= mask.sum() <= 60


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"kind": "rect"}',
        '[{"kind": "circle", "x": 1}]',
        '[{"kind": "rect", "x": "1", "y": 0, "w": 1, "h": 1}]',
        '[{"kind": "rect", "x": 0, "y": 0, "w": 0, "h": 1}]',
        '[{"kind": "polygon", "points": [[0, 0], [1, 1]]}]',
    ],
)
def test_bad_regions_are_clear_errors(text):
    with pytest.raises(InvalidRegionsError, match="SimplyPNG"):
        rasterize_regions(parse_regions(text), "px", 10, 10)


@pytest.mark.parametrize(
    ("regions", "units"),
    [
        ([{"kind": "rect", "x": 10, "y": 0, "w": 5, "h": 5}], "px"),
        ([{"kind": "rect", "x": -6, "y": 2, "w": 6, "h": 2}], "px"),
        ([{"kind": "rect", "x": 1.0, "y": 0.0, "w": 0.5, "h": 0.5}], "normalized"),
        ([{"kind": "polygon", "points": [[20, 20], [30, 20], [20, 30]]}], "px"),
        ([{"kind": "rect", "x": 1e308, "y": 1e308, "w": 1e308, "h": 1e308}], "normalized"),
        ([{"kind": "rect", "x": -1e308, "y": 0, "w": 1e308, "h": 1}], "px"),
        ([{"kind": "polygon", "points": [[1e308, 0], [1.5e308, 1], [1e308, 1e308]]}], "px"),
    ],
)
def test_regions_that_cover_no_pixel_are_an_error(regions, units):
    with pytest.raises(InvalidRegionsError, match="do not cover any pixel of the image"):
        rasterize_regions(regions, units, 10, 10)
    assert not rasterize_regions([], "px", 10, 10).any()  # no regions at all: no error here


def test_huge_coordinates_do_not_overflow():
    every = [
        [{"kind": "rect", "x": -1e308, "y": -1e308, "w": 1.7e308, "h": 1.7e308}],
        [{"kind": "rect", "x": 0, "y": 0, "w": 1e308, "h": 1e308}],
        [{"kind": "polygon", "points": [[-1e308, -1e308], [1e308, -1e308], [0, 1e308]]}],
    ]
    for regions in every:
        for units in ("px", "normalized"):
            assert rasterize_regions(regions, units, 12, 9).all(), (regions, units)
    # a far vertex keeps the direction of the edges that cross the image
    wedge = [{"kind": "polygon", "points": [[0, 0], [1e308, 5e307], [0, 1e308]]}]
    mask = rasterize_regions(wedge, "px", 10, 10)
    assert mask[5, 8] and mask[9, 9] and not mask[3, 8] and not mask[0, 9]  # below y = x / 2


def test_polygon_clipping_is_exact_and_keeps_what_is_inside():
    far = (Fraction(1e308), Fraction(1e308))
    clipped = clip_polygon([(Fraction(0), Fraction(0)), far, (Fraction(0), far[1])], 10, 10)
    assert all(abs(c) <= 10 + CLIP_MARGIN for point in clipped for c in point)
    assert (Fraction(10 + CLIP_MARGIN), Fraction(10 + CLIP_MARGIN)) in clipped  # on the diagonal
    inside = [(Fraction(1), Fraction(2)), (Fraction(8), Fraction(2)), (Fraction(4), Fraction(9))]
    assert clip_polygon(inside, 10, 10) == inside
    # a vertex beyond the margin: the rasterised image equals drawing the original polygon
    points = [[2.0, 3.0], [3_000_000.0, 7.0], [3.0, 30.0]]
    canvas = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=255, outline=255)
    drawn = rasterize_regions([{"kind": "polygon", "points": points}], "px", 40, 40)
    assert np.array_equal(drawn, np.asarray(canvas) > 0)


def test_params_regions_serialised_by_the_handler_parse():
    regions = [{"kind": "rect", "x": 1.0, "y": 1.0, "w": 2.0, "h": 2.0}]
    assert parse_regions(json.dumps(regions)) == regions
    assert parse_regions("") == []


def test_dilate_grows_by_a_euclidean_radius():
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    assert dilate(mask, 3).sum() == 29  # lattice points within distance 3
    assert np.array_equal(dilate(mask, 0), mask)


def test_mask_image_white_means_remove_and_is_resized():
    small = np.zeros((5, 5, 3), np.float32)
    small[:, 3:] = 1.0
    mask = mask_from_image(small, 10, 10)
    assert mask.shape == (10, 10)
    assert mask[:, 7:].all() and not mask[:, :5].any()


def test_transparent_pixels_of_a_mask_image_remove_nothing():
    white = np.ones((4, 4, 3), np.float32)
    alpha = np.ones((4, 4), np.float32)
    alpha[:2] = 0.0  # the top half is transparent (white underneath, as editors often leave it)
    alpha[2:, :1] = 0.4  # partly transparent white counts as 40 % coverage: kept
    mask = mask_from_image(white, 4, 4, alpha)
    assert not mask[:2].any() and not mask[2:, 0].any() and mask[2:, 1:].all()
    rgba = np.concatenate([white, alpha[..., None]], axis=-1)  # or alpha as a 4th channel
    assert np.array_equal(mask_from_image(rgba, 4, 4), mask)
    # alpha at another size (LoadImage's 64x64 placeholder for "no alpha") is resized
    assert mask_from_image(white, 8, 8, np.ones((64, 64), np.float32)).all()
