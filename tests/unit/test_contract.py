import copy
import uuid

import pytest

from handler.contract import SCHEMA_PATH, parse_payload, render_schema
from handler.errors import ErrorCode, JobError
from handler.params import validate_params

GOOD = {
    "job_id": str(uuid.uuid4()),
    "type": "jpeg_to_png",
    "params": {"v": 1, "output_format": "png"},
    "inputs": [{"url": "https://storage.example/input/abc.jpg"}],
    "output_prefix": "s3://bucket/output/user123/x/",
    "webhook_url": "https://api.example/api/webhooks/runpod",
    "auth": {"callback_hmac": "a2V5"},
    "timeout_s": 180,
}


def parse(raw: object):
    return parse_payload(raw, max_inputs=4, max_timeout_s=600)


def test_good_payload_parses() -> None:
    payload = parse(copy.deepcopy(GOOD))
    assert payload.type == "jpeg_to_png"
    assert payload.inputs[0].url.endswith("abc.jpg")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(type="paint_it_black"), "type"),
        (lambda p: p.update(inputs="https://x/y.png"), "inputs"),
        (lambda p: p.update(timeout_s="soon"), "timeout_s"),
        (lambda p: p.update(job_id=str(uuid.uuid1())), "job_id"),
        (lambda p: p.update(job_id="not-a-uuid"), "job_id"),
        (lambda p: p.update(job_id="{" + str(uuid.uuid4()) + "}"), "job_id"),
        (lambda p: p.update(job_id=uuid.uuid4().hex), "job_id"),
        (lambda p: p.update(inputs=[{"url": "https://a/b.png"}] * 5), "inputs"),
        (lambda p: p.update(inputs=[]), "inputs"),
        (lambda p: p.update(timeout_s=0), "timeout_s"),
        (lambda p: p.update(timeout_s=601), "timeout_s"),
        (lambda p: p.update(surprise=1), "surprise"),
        (lambda p: p.pop("job_id"), "job_id"),
        (lambda p: p.pop("output_prefix"), "output_prefix"),
    ],
)
def test_bad_payload_is_invalid_payload(mutate, field: str) -> None:
    raw = copy.deepcopy(GOOD)
    mutate(raw)
    with pytest.raises(JobError) as info:
        parse(raw)
    assert info.value.code is ErrorCode.INVALID_PAYLOAD
    assert field in info.value.message


@pytest.mark.parametrize("raw", [None, [], "job", 3])
def test_non_object_is_invalid_payload(raw: object) -> None:
    with pytest.raises(JobError) as info:
        parse(raw)
    assert info.value.code is ErrorCode.INVALID_PAYLOAD


def test_params_defaults_filled() -> None:
    params = validate_params("bg_remove", {"v": 1})
    assert params.halo == 2 and params.shadow == "none" and params.output_format == "png"
    assert validate_params("upscale_2k", {}).target == 2048


@pytest.mark.parametrize(
    ("job_type", "params", "field"),
    [
        ("bg_remove", {"v": 2}, "params.v"),
        ("bg_remove", {"v": "1"}, "params.v"),
        ("bg_remove", {"halo": 11}, "params.halo"),
        ("bg_remove", {"shadow": "purple"}, "params.shadow"),
        ("bg_remove", {"output_format": "jpeg"}, "params.output_format"),
        ("jpeg_to_png", {"key_color": "white"}, "params.key_color"),
        ("jpeg_to_png", {"output_format": "webp"}, "params.output_format"),
        ("white_bg_ecomm", {"canvas_width": 800, "canvas_height": 800}, "params"),
        ("object_remove", {}, "params"),
        (
            "object_remove",
            {"regions": [{"kind": "rect", "x": 0, "y": 0, "w": 2, "h": 1}], "units": "normalized"},
            "params",
        ),
        ("upscale_2k", {"target": 100000}, "params.target"),
        ("cutout_subject", {"unknown": 1}, "params.unknown"),
        ("cutout_subject", {"square": "yes"}, "params.square"),
        (
            "object_remove",
            {"regions": [{"kind": "rect", "x": 0, "y": 0, "w": 1e308, "h": 1}]},
            "params.regions",
        ),
        (
            "object_remove",
            {"mask_url": "s3://prod-bucket/outputs/other-user/x.png"},
            "params.mask_url",
        ),
        ("object_remove", {"dilate": "3", "mask_url": "https://x.example/m.png"}, "params.dilate"),
        ("bg_remove", {"segmenter": "sam"}, "params.segmenter"),
        ("jpeg_to_png", {"transparent": "subject", "segmenter": "U2NETP"}, "params.segmenter"),
        ("upscale_2k", {"segmenter": "u2netp"}, "params.segmenter"),  # no mask, no segmenter
    ],
)
def test_bad_params_name_the_field(job_type: str, params: dict, field: str) -> None:
    with pytest.raises(JobError) as info:
        validate_params(job_type, params)
    assert info.value.code is ErrorCode.INVALID_PARAMS
    assert info.value.message.startswith(field)


def test_committed_json_schema_is_fresh() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), (
        "schema/contract.schema.json is stale: run `python -m handler.contract`"
    )


def test_job_id_is_normalised_to_lowercase() -> None:
    job_id = str(uuid.uuid4())
    raw = copy.deepcopy(GOOD) | {"job_id": job_id.upper()}
    assert parse(raw).job_id == job_id


def test_polygon_points_accept_json_lists() -> None:
    params = validate_params(
        "object_remove", {"regions": [{"kind": "polygon", "points": [[0, 0], [10, 0], [5, 8]]}]}
    )
    assert params.regions[0].points[2] == [5, 8]
