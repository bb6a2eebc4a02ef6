"""U²-Net "small" (u2netp) in torch, with batch norm folded into the convolutions.

The architecture is the one in xuebinqin/U-2-Net's `model/u2net.py` (Apache-2.0): nested
residual U-blocks (RSU) of 3x3 convolutions, some dilated, max-pooled on the way down and
bilinearly upsampled on the way up. Our pinned weights are the ONNX export rembg publishes, in
which each conv+BN pair was folded into one conv with a bias, so every REBNCONV here is
conv+ReLU. `onnx_convolutions` lists the convs in the order the network runs them, the order the
export wrote its Conv nodes in; the loader pairs the two lists and checks each pair's shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _up_like(src: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # ONNX Resize, linear, pytorch_half_pixel: bilinear with align_corners=False.
    return F.interpolate(src, size=like.shape[2:], mode="bilinear", align_corners=False)


class ConvReLU(nn.Module):
    """U-2-Net's REBNCONV with the batch norm folded in: 3x3 conv (dilated), bias, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class RSU(nn.Module):
    """Residual U-block of `depth` levels (RSU7 .. RSU4 in the paper), or RSU4F.

    RSU: levels 1..depth-1 are max-pooled on the way down, the bottom level is dilated by 2,
    and the decoder upsamples each level's output to the one above before concatenating.
    RSU4F (`dilated=True`, depth 4) never changes resolution: dilations 1, 2, 4 down, 8 at the
    bottom, 4, 2, 1 up.
    """

    def __init__(self, depth: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False):
        super().__init__()
        down = [2**level if dilated else 1 for level in range(depth - 1)]
        self.pooled = not dilated
        self.conv_in = ConvReLU(in_ch, out_ch)
        self.down = nn.ModuleList(
            [ConvReLU(out_ch if i == 0 else mid_ch, mid_ch, d) for i, d in enumerate(down)]
        )
        self.bottom = ConvReLU(mid_ch, mid_ch, dilation=2 ** (depth - 1) if dilated else 2)
        up = list(reversed(down))
        self.up = nn.ModuleList(
            [
                ConvReLU(mid_ch * 2, out_ch if i == len(up) - 1 else mid_ch, d)
                for i, d in enumerate(up)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips = []
        h = x_in
        for index, conv in enumerate(self.down):
            if index and self.pooled:
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(self.up, reversed(skips), strict=True):
            if h.shape[2:] != skip.shape[2:]:
                h = _up_like(h, skip)
            h = conv(torch.cat((h, skip), 1))
        return h + x_in


def RSU4F(in_ch: int, mid_ch: int, out_ch: int) -> RSU:
    """The paper's RSU4F: RSU of depth 4, dilated instead of pooled."""
    return RSU(4, in_ch, mid_ch, out_ch, dilated=True)


class U2NetP(nn.Module):
    """u2netp: six encoder stages, five decoder stages, six side outputs fused by a 1x1 conv.

    `forward` returns the fused output's logits (Bx1xHxW); the side outputs only feed it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            [
                RSU(7, 3, 16, 64),
                RSU(6, 64, 16, 64),
                RSU(5, 64, 16, 64),
                RSU(4, 64, 16, 64),
                RSU4F(64, 16, 64),
                RSU4F(64, 16, 64),
            ]
        )
        self.decoder = nn.ModuleList(
            [
                RSU4F(128, 16, 64),
                RSU(4, 128, 16, 64),
                RSU(5, 128, 16, 64),
                RSU(6, 128, 16, 64),
                RSU(7, 128, 16, 64),
            ]
        )
        self.side = nn.ModuleList([nn.Conv2d(64, 1, 3, padding=1) for _ in range(6)])
        self.fuse = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = []
        h = x
        for index, stage in enumerate(self.encoder):
            if index:
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            h = stage(h)
            encoded.append(h)
        decoded = [h]  # the deepest stage is the first "decoder" output
        for stage, skip in zip(self.decoder, reversed(encoded[:-1]), strict=True):
            h = stage(torch.cat((_up_like(h, skip), skip), 1))
            decoded.append(h)
        # side[0] reads the top decoder stage (full resolution), side[5] the deepest.
        sides = [conv(feature) for conv, feature in zip(self.side, reversed(decoded), strict=True)]
        full = sides[0]
        sides = [full] + [_up_like(side, full) for side in sides[1:]]
        return self.fuse(torch.cat(sides, 1))


def onnx_convolutions(model: U2NetP) -> list[nn.Conv2d]:
    """The model's convs in the order its forward pass runs them (the export's Conv order)."""
    order: list[nn.Conv2d] = []
    for stage in [*model.encoder, *model.decoder]:
        assert isinstance(stage, RSU)
        block_convs = [stage.conv_in, *stage.down, stage.bottom, *stage.up]
        order += [block.conv for block in block_convs if isinstance(block, ConvReLU)]
    sides = [conv for conv in model.side if isinstance(conv, nn.Conv2d)]
    return [*order, *sides, model.fuse]
