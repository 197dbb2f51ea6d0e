"""Tests of vaecourse.models.flow.warp against hand-computed displacements."""

import pytest
import torch

from vaecourse.models.flow import warp

F64 = torch.float64


def images(b: int = 2, c: int = 3, h: int = 7, w: int = 9) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(0), dtype=F64)


def constant_flow(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    b, _, h, w = x.shape
    return torch.tensor([dx, dy], dtype=x.dtype).expand(b, h, w, 2).clone()


def test_zero_flow_is_the_identity():
    x = images()
    assert torch.allclose(warp(x, constant_flow(x, 0, 0)), x, atol=1e-12)
    x32 = x.float()
    assert torch.allclose(warp(x32, constant_flow(x32, 0, 0)), x32, atol=1e-6)


def test_an_integer_shift_is_a_roll_inside_and_zeros_outside():
    x = images()
    out = warp(x, constant_flow(x, 2, -1))  # out[i, j] = x[i - 1, j + 2]
    rolled = torch.roll(x, shifts=(1, -2), dims=(-2, -1))
    assert torch.allclose(out[..., 1:, :-2], rolled[..., 1:, :-2], atol=1e-12)
    # outside the image: zeros (up to the rounding of the normalized coordinates)
    assert out[..., 0, :].abs().max() < 1e-12 and out[..., :, -2:].abs().max() < 1e-12
    # a flow of +1 along x moves the picture one pixel to the left
    out = warp(x, constant_flow(x, 1, 0))
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-12)


def test_a_half_pixel_shift_averages_neighbours():
    x = images()
    out = warp(x, constant_flow(x, 0.5, 0))
    assert torch.allclose(out[..., :-1], (x[..., :-1] + x[..., 1:]) / 2, atol=1e-12)
    out = warp(x, constant_flow(x, 0.5, 0.5))
    four = (x[..., :-1, :-1] + x[..., :-1, 1:] + x[..., 1:, :-1] + x[..., 1:, 1:]) / 4
    assert torch.allclose(out[..., :-1, :-1], four, atol=1e-12)


def test_a_fractional_displacement_is_bilinear():
    x = images()
    a, b = 0.25, 0.7  # along x and along y
    out = warp(x, constant_flow(x, a, b))
    by_hand = ((1 - a) * (1 - b) * x[..., :-1, :-1] + a * (1 - b) * x[..., :-1, 1:]
               + (1 - a) * b * x[..., 1:, :-1] + a * b * x[..., 1:, 1:])
    assert torch.allclose(out[..., :-1, :-1], by_hand, atol=1e-12)


def test_each_pixel_follows_its_own_displacement():
    x = images(b=1, c=1)
    flow = torch.zeros(1, 7, 9, 2, dtype=F64)
    flow[0, 3, 4] = torch.tensor([-3.0, 2.0])  # pixel (3, 4) reads (5, 1)
    out = warp(x, flow)
    assert out[0, 0, 3, 4] == pytest.approx(x[0, 0, 5, 1].item(), abs=1e-12)
    unchanged = torch.ones(7, 9, dtype=torch.bool)
    unchanged[3, 4] = False
    assert torch.allclose(out[0, 0][unchanged], x[0, 0][unchanged], atol=1e-12)


def test_border_padding_repeats_the_edge():
    x = images()
    out = warp(x, constant_flow(x, 100, 0), padding_mode="border")
    assert torch.allclose(out, x[..., -1:].expand_as(x), atol=1e-12)
    assert warp(x, constant_flow(x, 100, 0)).abs().max() == 0


def test_the_gradient_flows_to_the_flow_field():
    x = images(b=1, c=2, h=5, w=6)
    flow = (0.3 + 0.4 * torch.rand(1, 5, 6, 2, generator=torch.Generator().manual_seed(1),
                                   dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda f: warp(x, f), (flow,))
    # inside a pixel square the output is bilinear: d out / d flow_x = the x-difference of the
    # two rows, weighted by the y fraction
    warp(x, flow).sum().backward()
    b = flow.detach()[0, :-1, :-1, 1]
    dx_top = x[0, :, :-1, 1:] - x[0, :, :-1, :-1]
    dx_bottom = x[0, :, 1:, 1:] - x[0, :, 1:, :-1]
    expected = ((1 - b) * dx_top + b * dx_bottom).sum(0)  # summed over the channels
    assert torch.allclose(flow.grad[0, :-1, :-1, 0], expected, atol=1e-10)


def test_the_gradient_flows_to_the_images():
    x = images(b=1, c=1, h=4, w=5).requires_grad_()
    flow = constant_flow(x.detach(), 0.5, 0.0)
    assert torch.autograd.gradcheck(lambda im: warp(im, flow), (x,))


@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(3, 4, 4), torch.zeros(1, 4, 4, 2)), r"images must be .* \(B, C, H, W\)"),
    ((torch.zeros(1, 1, 4, 4, dtype=torch.int64), torch.zeros(1, 4, 4, 2)), "floating-point"),
    ((torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 4, 2)), "at least 2x2"),
    ((torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4)), r"flow must be .*\(1, 4, 4, 2\)"),
    ((torch.zeros(2, 1, 4, 4), torch.zeros(1, 4, 4, 2)), r"\(2, 4, 4, 2\)"),
    ((torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 2, dtype=torch.int64)), "torch.int64"),
])
def test_warp_rejects_bad_shapes(args, message):
    with pytest.raises(ValueError, match=message):
        warp(*args)


def test_warp_rejects_an_unknown_padding_mode():
    x = images()
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        warp(x, constant_flow(x, 0, 0), padding_mode="reflect")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_warp_on_cuda_matches_the_cpu():
    x = images().float()
    flow = 2 * torch.rand(2, 7, 9, 2, generator=torch.Generator().manual_seed(4)) - 1
    out = warp(x.cuda(), flow.cuda().requires_grad_())
    assert out.is_cuda
    assert torch.allclose(out.cpu(), warp(x, flow), atol=1e-5)
    out.sum().backward()
