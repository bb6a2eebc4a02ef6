"""Raw pixel files (.npy) on both sides of the hand-over, and the raw load/save nodes.

The node side (`simplypng.raw_pixels`, `simplypng.raw_nodes`) and the worker side
(`handler.rawpixels`) must read each other's files; both refuse anything that is not 8-bit
RGB/RGBA. The nodes run here with ComfyUI's `folder_paths` and `comfy.model_management`
replaced by the test double's shims.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from simplypng import raw_nodes
from simplypng.raw_pixels import RawPixelsError, part_name, read_pixels, write_pixels

from handler import rawpixels
from handler.errors import JobError
from tests.fakes.comfy_double import ComfyDouble
from tests.fakes.comfy_double_nodes import running_in


def _pixels(channels: int = 4, height: int = 23, width: int = 31, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


@pytest.mark.parametrize("channels", [3, 4])
def test_both_sides_read_each_others_files_exactly(tmp_path: Path, channels: int) -> None:
    pixels = _pixels(channels)
    write_pixels(tmp_path / "node.npy", pixels)
    rawpixels.write(tmp_path / "worker.npy", pixels)
    assert (tmp_path / "node.npy").read_bytes() == (tmp_path / "worker.npy").read_bytes()
    buffer = io.BytesIO()
    np.save(buffer, pixels)  # the header is np.save's own
    assert (tmp_path / "node.npy").read_bytes() == buffer.getvalue()
    np.testing.assert_array_equal(read_pixels(tmp_path / "worker.npy"), pixels)
    np.testing.assert_array_equal(rawpixels.read(tmp_path / "node.npy"), pixels)
    np.testing.assert_array_equal(rawpixels.from_bytes(rawpixels.to_bytes(pixels)), pixels)


def test_a_file_split_into_parts_reads_back_whole(tmp_path: Path) -> None:
    pixels = _pixels(3, 40, 50)
    data = rawpixels.to_bytes(pixels)
    cuts = [0, 200, 3000, 3001, len(data)]  # the header (128 bytes) is in the first part
    for index, (start, end) in enumerate(itertools.pairwise(cuts)):
        (tmp_path / part_name("x.npy", index)).write_bytes(data[start:end])
    np.testing.assert_array_equal(read_pixels(tmp_path / "x.npy", parts=4), pixels)
    with pytest.raises(RawPixelsError, match="missing"):
        read_pixels(tmp_path / "x.npy", parts=5)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), r"uint8 \[B\]xHxWxC"),
        (np.zeros((4, 4, 2), np.uint8), r"\[B\]xHxWx3 or \[B\]xHxWx4"),
        (np.zeros((65, 2, 2, 3), np.uint8), "1..64 images"),
        (np.zeros((0, 4, 3), np.uint8), "size"),
        (np.asfortranarray(np.zeros((4, 5, 3), np.uint8)), "C-order"),
    ],
)
def test_the_node_side_refuses_other_arrays(tmp_path: Path, array: np.ndarray, message) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(RawPixelsError, match=message):
        read_pixels(tmp_path / "bad.npy")


def test_truncated_files_and_non_npy_files_are_refused(tmp_path: Path) -> None:
    data = rawpixels.to_bytes(_pixels())
    (tmp_path / "short.npy").write_bytes(data[:-1])
    (tmp_path / "long.npy").write_bytes(data + b"\0")
    (tmp_path / "png.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    for name in ("short.npy", "long.npy"):
        with pytest.raises(RawPixelsError, match="the header says"):
            read_pixels(tmp_path / name)
    with pytest.raises(RawPixelsError, match=r"not a \.npy"):
        read_pixels(tmp_path / "png.npy")
    with pytest.raises(JobError, match="unreadable"):
        rawpixels.read(tmp_path / "png.npy")
    with pytest.raises(JobError, match="unreadable"):
        rawpixels.from_bytes(data[:-1])


def test_the_worker_side_never_unpickles(tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(JobError) as caught:
        rawpixels.read(tmp_path / "objects.npy")
    assert caught.value.code == "NODE_ERROR"


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ComfyDouble]:
    server = ComfyDouble(tmp_path / "comfy", node_packs=[])
    from tests.fakes.comfy_double_nodes import acquire_comfy_shims, release_comfy_shims

    acquire_comfy_shims()
    try:
        with running_in(server):
            yield server
    finally:
        release_comfy_shims()


def test_load_raw_gives_loadimage_outputs(double: ComfyDouble) -> None:
    folder = double.input_dir / "run"
    folder.mkdir()
    rgba, rgb = _pixels(4), _pixels(3, seed=1)
    write_pixels(folder / "a.npy", rgba)
    write_pixels(folder / "b.npy", rgb)
    node = raw_nodes.SimplyPNGLoadRaw()
    image, mask = node.run("run/a.npy", 1)
    assert image.shape == (1, 23, 31, 3) and image.dtype == torch.float32
    np.testing.assert_array_equal((image[0] * 255).round().to(torch.uint8).numpy(), rgba[..., :3])
    np.testing.assert_allclose(mask[0].numpy(), 1.0 - rgba[..., 3] / 255.0, atol=1e-6)
    _, opaque = node.run("run/b.npy", 1)
    assert opaque.shape == (1, 64, 64) and not opaque.any()  # LoadImage's placeholder
    assert raw_nodes.SimplyPNGLoadRaw.VALIDATE_INPUTS("run/a.npy", 1) is True
    assert "x.npy" in str(raw_nodes.SimplyPNGLoadRaw.VALIDATE_INPUTS("run/x.npy", 1))
    assert "part000" in str(raw_nodes.SimplyPNGLoadRaw.VALIDATE_INPUTS("run/a.npy", 2))
    first = raw_nodes.SimplyPNGLoadRaw.IS_CHANGED("run/a.npy", 1)
    write_pixels(folder / "a.npy", _pixels(4, seed=9, width=32))
    assert raw_nodes.SimplyPNGLoadRaw.IS_CHANGED("run/a.npy", 1) != first


def test_save_raw_rounds_on_the_device_and_reports_like_saveimage(double: ComfyDouble) -> None:
    # 0.99999994 would be 254 after SaveImage's truncation; k/255 must come back as k.
    values = torch.tensor([0.0, 1 / 255, 128 / 255, 0.99999994, 1.0, 1.5, -0.2])
    image = values.repeat(3, 1).T.reshape(1, 1, 7, 3).contiguous()
    answer = raw_nodes.SimplyPNGSaveRaw().run(image, "run/out_00")
    [ref] = answer["ui"]["images"]
    assert ref["subfolder"] == "run" and ref["type"] == "output"
    assert ref["filename"].startswith("out_00_") and ref["filename"].endswith(".npy")
    saved = read_pixels(double.output_dir / "run" / ref["filename"])
    assert saved[0, :, 0].tolist() == [0, 1, 128, 255, 255, 255, 0]
    with pytest.raises(Exception, match="outside the output folder"):
        raw_nodes.SimplyPNGSaveRaw().run(image, "../escape/out")


def test_pixels_nodes_keep_alpha_and_add_it_only_when_missing(double: ComfyDouble) -> None:
    folder = double.input_dir / "run"
    folder.mkdir()
    rgb, rgba = _pixels(3), _pixels(4, seed=2)
    write_pixels(folder / "rgb.npy", rgb)
    write_pixels(folder / "rgba.npy", rgba)
    load, save = raw_nodes.SimplyPNGLoadPixels(), raw_nodes.SimplyPNGSavePixels()
    for name, source in (("rgb", rgb), ("rgba", rgba)):
        (pixels,) = load.run(f"run/{name}.npy", 1)
        assert pixels.dtype == torch.uint8
        [ref] = save.run(pixels, "add", f"run/{name}")["ui"]["images"]
        saved = read_pixels(double.output_dir / "run" / ref["filename"])
        np.testing.assert_array_equal(saved[..., :3], source[..., :3])
        expected_alpha = source[..., 3] if name == "rgba" else np.full(rgb.shape[:2], 255)
        np.testing.assert_array_equal(saved[..., 3], expected_alpha)
    (pixels,) = load.run("run/rgb.npy", 1)
    [ref] = save.run(pixels, "keep", "run/kept")["ui"]["images"]
    assert read_pixels(double.output_dir / "run" / ref["filename"]).shape == rgb.shape


def test_a_batch_file_loads_as_one_image_batch(double: ComfyDouble) -> None:
    folder = double.input_dir / "run"
    folder.mkdir()
    batch = np.stack([_pixels(4, seed=i) for i in range(3)])
    rawpixels.write(folder / "batch.npy", batch)
    image, mask = raw_nodes.SimplyPNGLoadRaw().run("run/batch.npy", 1)
    assert image.shape == (3, 23, 31, 3) and mask.shape == (3, 23, 31)
    np.testing.assert_allclose(mask[2].numpy(), 1.0 - batch[2, ..., 3] / 255.0, atol=1e-6)
    (pixels,) = raw_nodes.SimplyPNGLoadPixels().run("run/batch.npy", 1)
    answer = raw_nodes.SimplyPNGSavePixels().run(pixels, "keep", "run/out")
    names = [ref["filename"] for ref in answer["ui"]["images"]]
    assert len(names) == 3 and names == sorted(names)
    for index, name in enumerate(names):
        np.testing.assert_array_equal(read_pixels(double.output_dir / "run" / name), batch[index])
    with pytest.raises(JobError):
        rawpixels.read(folder / "batch.npy")  # outputs are one image per file
