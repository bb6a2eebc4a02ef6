"""The numpy reference implementations of the node pack's image operations (tests only).

The shipped node pack runs the torch ports in `simplypng.ops`; these are the original numpy /
scipy / Pillow versions, kept so that the parity tests (tests/unit/test_parity_*.py) can show
the torch ops give the same pixels, and `scripts/bench_models.py --ops` can time both. The
pure-Python pieces both share (canvas and layout arithmetic, region parsing, crop boxes, the
errors) live in `simplypng.ops` and are imported from there.
"""
