"""Which inputs of a job share one prompt (and one model pass)."""

from handler.batching import batches


def test_same_shapes_share_a_batch_in_input_order() -> None:
    shapes = [(10, 20, 3), (10, 20, 3), (5, 5, 3), (10, 20, 4), (10, 20, 3)]
    assert batches(shapes, 10_000) == [[0, 1, 4], [2], [3]]


def test_a_batch_never_exceeds_the_pixel_budget_but_one_image_always_fits() -> None:
    shapes = [(100, 100, 3)] * 5
    assert batches(shapes, 25_000) == [[0, 1], [2, 3], [4]]
    assert batches(shapes, 1) == [[0], [1], [2], [3], [4]]


def test_no_inputs_no_batches() -> None:
    assert batches([], 100) == []
