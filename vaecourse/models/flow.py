"""Warping images by a displacement field (chapter 15 (attributes), editing by flow).

An edit by flow (after Yeh et al. 2016) does not paint a new image: it moves the input's pixels.
A network predicts a displacement field ``flow`` and the edited image is the input sampled at the
displaced positions, with bilinear interpolation so that the result is differentiable in the
flow (``torch.nn.functional.grid_sample``).

Convention (backward warping, in pixels): for images (B, C, H, W) and a flow (B, H, W, 2),

    out[b, :, i, j] = images[b, :, i + flow[b, i, j, 1], j + flow[b, i, j, 0]],

so ``flow[..., 0]`` is the displacement along x (columns, to the right) and ``flow[..., 1]``
along y (rows, down), and a constant flow of (+1, 0) moves the picture one pixel to the LEFT
(each output pixel reads its right-hand neighbour). Positions are pixel centres
(``align_corners=True``: pixel j sits at the normalized coordinate 2 j / (W - 1) - 1); between
centres the value is bilinear in the four neighbours; positions outside the image read 0
(``padding_mode="zeros"``) or the nearest edge pixel (``"border"``). :class:`FlowEditor` is the
network that predicts the flow of an edit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PADDING_MODES = ("zeros", "border")


def warp(images: Tensor, flow: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Sample ``images`` (B, C, H, W) at each pixel plus ``flow`` (B, H, W, 2) pixels, bilinearly.

    See the module docstring for the convention. Returns (B, C, H, W); gradients flow to both
    the images and the flow.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        given = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating-point tensor (B, C, H, W), got {given}")
    b, _, h, w = images.shape
    if h < 2 or w < 2:
        raise ValueError(f"images must be at least 2x2 pixels, got {h}x{w}")
    if not isinstance(flow, Tensor) or flow.shape != (b, h, w, 2) or not flow.is_floating_point():
        given = (f"{flow.dtype} of shape {tuple(flow.shape)}" if isinstance(flow, Tensor)
                 else type(flow).__name__)
        raise ValueError(f"flow must be a floating-point tensor of shape (B, H, W, 2) = "
                         f"{(b, h, w, 2)} for images of shape {tuple(images.shape)}, got {given}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = xs + flow[..., 0]
    y = ys + flow[..., 1]
    grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear",
                         padding_mode=padding_mode, align_corners=True)


class FlowEditor(nn.Module):
    """Edit one attribute by flow (chapter 15, after Yeh et al. 2016): predict a displacement
    field from the image and the attribute's source and target values, then :func:`warp`.

    A small convolutional encoder-decoder (32 -> 16 -> 8 -> 16 -> 32 pixels, ``width``
    channels) reads the image and, as constant channels, the one-hot source and target values of
    the attribute (``values`` of them), and outputs the flow (B, H, W, 2) in pixels. Its last
    layer starts at zero: the untrained editor is the identity. :meth:`loss` is the squared
    error, summed over pixels, between the warped image and the true edited image.
    """

    def __init__(self, values: int, width: int = 16):
        super().__init__()
        if not isinstance(values, int) or values < 2 or not isinstance(width, int) or width < 1:
            raise ValueError(f"values must be an int >= 2 and width an int >= 1, "
                             f"got {values!r} and {width!r}")
        self.values = values
        self.net = nn.Sequential(
            nn.Conv2d(1 + 2 * values, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def flow(self, images: Tensor, source: Tensor, target: Tensor) -> Tensor:
        """The displacement field (B, H, W, 2) that moves ``source`` to ``target`` (each (B,),
        int64 values of the attribute) in ``images`` (B, 1, H, W)."""
        b, _, h, w = images.shape
        for name, v in (("source", source), ("target", target)):
            if (v.shape != (b,) or v.dtype != torch.int64 or (v < 0).any()
                    or (v >= self.values).any()):
                raise ValueError(f"{name} must be int64 values in 0..{self.values - 1} of shape "
                                 f"({b},), got {v.dtype} of shape {tuple(v.shape)}")
        codes = torch.cat([F.one_hot(source, self.values), F.one_hot(target, self.values)], -1)
        planes = codes.to(images.dtype)[:, :, None, None].expand(-1, -1, h, w)
        return self.net(torch.cat([images, planes], 1)).permute(0, 2, 3, 1)

    def forward(self, images: Tensor, source: Tensor, target: Tensor) -> Tensor:
        """The edited images: ``images`` warped by :meth:`flow`, (B, 1, H, W)."""
        return warp(images, self.flow(images, source, target))

    def loss(self, batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean squared error, summed over pixels, of a batch ``(images, source, target,
        edited)``: the editor's output against the true edited images."""
        images, source, target, edited = batch
        loss = (self(images, source, target) - edited).pow(2).flatten(1).sum(-1).mean()
        return loss, {"loss": loss.item()}
