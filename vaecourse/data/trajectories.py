"""Junction scenes: futures with an exactly known, multimodal density given an image (chapter 10).

An agent drives north towards a junction. Each exit k (west, north, east by default) is open or
closed, and the image shows the open roads. Given the image y (that is, the open set O), the agent
picks an open exit with probability p(k | y) = w_k / sum_{j in O} w_j and drives T steps along a
perturbed quadratic Bezier path to it:

    x = m_k + A_k f + sigma * eps,    f ~ N(0, I_2),  eps ~ N(0, I_2T),

where m_k is the nominal path (positions at T times) and the two columns of A_k move it along
the path (a speed change, scale ``speed_sd``) and across it (a lateral offset, scale
``lateral_sd``). Given (y, k) the flattened future is exactly Gaussian,
N(m_k, A_k A_k^T + sigma^2 I), so the density of the future given the image is the mixture

    p(x | y) = sum_{k in O} p(k | y) N(x; m_k, A_k A_k^T + sigma^2 I)        (eq. 10.1)

whose log is an exact log-sum-exp (:meth:`Junction.log_prob`). Trajectories have shape
``(..., T, 2)`` in scene units (the image spans [-1, 1]^2, north up); open sets are boolean
masks of shape ``(..., K)``. The book's notation (book/notation.md): x is what is modelled, the
future, and y the condition, the image; the arguments that hold futures are named ``y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal
from torch.utils.data import TensorDataset

EXIT_NAMES = ("west", "north", "east")


def _check_mask(name: str, mask: object, exits: int) -> Tensor:
    """Raise ``ValueError`` unless ``mask`` is a boolean tensor (..., exits) with an open exit."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        given = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a boolean torch.Tensor, got {given}")
    if mask.dim() == 0 or mask.shape[-1] != exits:
        raise ValueError(f"{name} must have shape (..., {exits}), got {tuple(mask.shape)}")
    if not mask.any(-1).all():
        raise ValueError(f"{name} must open at least one exit in every scene")
    return mask


def _segment_distance(points: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance from ``points`` (..., 2) to the segment from ``a`` to ``b`` (each of shape (2,))."""
    ab = b - a
    u = ((points - a) @ ab / ab.dot(ab)).clamp(0, 1)
    return (points - a - u.unsqueeze(-1) * ab).norm(dim=-1)


@dataclass(frozen=True)
class Junction:
    """The scene's geometry and noise (defaults: a T-junction with exits west, north and east)."""

    steps: int = 12  # T, future positions per trajectory
    angles: tuple[float, ...] = (180.0, 90.0, 0.0)  # exit directions in degrees (0 = east)
    weights: tuple[float, ...] = (1.0, 2.0, 1.0)  # w_k: preference for exit k when it is open
    start: tuple[float, float] = (0.0, -0.55)  # the agent's position now
    exit_radius: float = 0.85  # distance of each path's end from the junction's centre
    speed_sd: float = 0.08  # relative speed change (a fraction of the path's progress)
    lateral_sd: float = 0.08  # lateral offset at the last step, scene units
    noise_sd: float = 0.04  # sigma, independent noise on every coordinate
    road_width: float = 0.3

    @property
    def exits(self) -> int:
        """K, the number of exits."""
        return len(self.angles)

    def directions(self) -> Tensor:
        """Unit vectors from the centre towards each exit, shape (K, 2)."""
        rad = torch.tensor(self.angles, dtype=torch.float64) * math.pi / 180
        return torch.stack([rad.cos(), rad.sin()], -1)

    def paths(self) -> tuple[Tensor, Tensor]:
        """Nominal paths m_k and their factors A_k: shapes (K, T, 2) and (K, T, 2, 2).

        Path k is the quadratic Bezier B(u) = (1-u)^2 P0 + 2u(1-u) C + u^2 E_k from the start P0
        past the centre C = 0 to E_k, at u_t = t/T. A_k's columns are the derivatives of the
        position in the speed change v (u_t B'(u_t) speed_sd) and the lateral offset
        (u_t n(u_t) lateral_sd, n the unit normal).
        """
        u = torch.arange(1, self.steps + 1, dtype=torch.float64).div(self.steps)[:, None]
        p0 = torch.tensor(self.start, dtype=torch.float64)
        ends = self.exit_radius * self.directions()[:, None, :]  # (K, 1, 2)
        mean = (1 - u) ** 2 * p0 + u**2 * ends  # (K, T, 2); the centre term vanishes (C = 0)
        tangent = -2 * (1 - u) * p0 + 2 * u * ends
        normal = torch.stack([-tangent[..., 1], tangent[..., 0]], -1)
        normal = normal / normal.norm(dim=-1, keepdim=True)
        factors = torch.stack([self.speed_sd * u * tangent, self.lateral_sd * u * normal], -1)
        return mean, factors

    def components(self) -> LowRankMultivariateNormal:
        """The K Gaussians N(m_k, A_k A_k^T + sigma^2 I) of the flattened futures (2T dims)."""
        mean, factors = self.paths()
        d = 2 * self.steps
        return LowRankMultivariateNormal(
            mean.reshape(self.exits, d), factors.reshape(self.exits, d, 2),
            torch.full((self.exits, d), self.noise_sd**2, dtype=torch.float64))

    def mode_log_probs(self, open_mask: Tensor) -> Tensor:
        """log p(k | y) = log w_k - log sum_{j open} w_j, -inf for closed exits: shape (..., K)."""
        open_mask = _check_mask("open_mask", open_mask, self.exits)
        log_w = torch.tensor(self.weights, dtype=torch.float64).log().expand(open_mask.shape)
        log_w = log_w.masked_fill(~open_mask, -math.inf)
        return log_w - torch.logsumexp(log_w, -1, keepdim=True)

    def component_log_probs(self, y: Tensor) -> Tensor:
        """log N(x; m_k, A_k A_k^T + sigma^2 I) for every exit: shape (..., K) for x (..., T, 2)."""
        if not isinstance(y, Tensor) or tuple(y.shape[-2:]) != (self.steps, 2):
            given = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must have shape (..., {self.steps}, 2), got {given}")
        flat = y.to(torch.float64).flatten(-2).unsqueeze(-2)  # (..., 1, 2T)
        return self.components().log_prob(flat)

    def log_prob(self, y: Tensor, open_mask: Tensor) -> Tensor:
        """Exact log p(x | y) = logsumexp_k [log p(k | y) + log N_k(x)] (eq. 10.1): shape (...)."""
        return torch.logsumexp(self.mode_log_probs(open_mask) + self.component_log_probs(y), -1)

    def responsibilities(self, y: Tensor, open_mask: Tensor) -> Tensor:
        """p(k | x, y), the posterior probability that x went to exit k: shape (..., K)."""
        joint = self.mode_log_probs(open_mask) + self.component_log_probs(y)
        return torch.softmax(joint, -1)

    def classify(self, y: Tensor) -> Tensor:
        """The exit whose Gaussian explains x best (all exits, equal weights): shape (...)."""
        return self.component_log_probs(y).argmax(-1)

    def step_log_prob(self, y: Tensor, open_mask: Tensor) -> Tensor:
        """Exact log p(x_t | y) of each position alone (a mixture of 2-D Gaussians): (..., T)."""
        mean, factors = self.paths()  # (K, T, 2), (K, T, 2, 2)
        cov = factors @ factors.transpose(-1, -2) + self.noise_sd**2 * torch.eye(2).double()
        step = MultivariateNormal(mean.transpose(0, 1), cov.transpose(0, 1))  # batch (T, K)
        log_n = step.log_prob(y.to(torch.float64).unsqueeze(-2))  # (..., T, K)
        return torch.logsumexp(self.mode_log_probs(open_mask).unsqueeze(-2) + log_n, -1)

    def sample(self, open_mask: Tensor, n: int | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Exact draws from p(x | y): trajectories (n, ..., T, 2) and their exits (n, ...).

        Draw the exit k ~ p(k | y), then f ~ N(0, I_2) and eps, and return m_k + A_k f + sigma eps.
        With ``n=None`` one draw per scene, without the leading dimension.
        """
        probs = self.mode_log_probs(open_mask).exp()
        shape = (1 if n is None else n, *open_mask.shape[:-1])
        modes = torch.multinomial(probs.reshape(-1, self.exits), shape[0], replacement=True,
                                  generator=generator).T.reshape(shape)
        mean, factors = self.paths()
        f = torch.randn(*shape, 2, 1, dtype=torch.float64, generator=generator)
        eps = torch.randn(*shape, self.steps, 2, dtype=torch.float64, generator=generator)
        y = mean[modes] + (factors[modes] @ f[..., None, :, :]).squeeze(-1) + self.noise_sd * eps
        y = y.float()
        return (y[0], modes[0]) if n is None else (y, modes)

    def sample_open(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n open sets drawn uniformly from the 2^K - 1 non-empty subsets: shape (n, K)."""
        codes = torch.randint(1, 2**self.exits, (n,), generator=generator)
        return (codes[:, None] >> torch.arange(self.exits)) & 1 == 1

    def pixel_centres(self, size: int) -> Tensor:
        """Scene coordinates of the pixel centres of a size x size image (row 0 at the top)."""
        c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
        return torch.stack([c.expand(size, size), c.flip(0)[:, None].expand(size, size)], -1)

    def render(self, open_mask: Tensor, size: int) -> Tensor:
        """Grey images (..., 1, size, size): the southern road and every open exit's road.

        A pixel's value is the anti-aliased coverage of the union of the open roads' strips
        (road_width wide, from the centre to the border), so closed exits leave no trace.
        """
        open_mask = _check_mask("open_mask", open_mask, self.exits)
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        points = self.pixel_centres(size)
        centre = torch.zeros(2, dtype=torch.float64)
        arms = [_segment_distance(points, centre, torch.tensor([0.0, -2.0]).double())]
        arms += [_segment_distance(points, centre, 2 * d) for d in self.directions()]
        pixel = 2 / size
        cover = [(0.5 + (self.road_width / 2 - dist) / pixel).clamp(0, 1) for dist in arms]
        south, exits = cover[0], torch.stack(cover[1:])  # (S, S), (K, S, S)
        shown = exits * open_mask[..., :, None, None]
        image = torch.maximum(south, shown.amax(-3))
        return image.unsqueeze(-3).float()

    def read_open_exits(self, images: Tensor) -> Tensor:
        """The open set shown by rendered images (..., 1, S, S): the pixel on each exit's road."""
        size = images.shape[-1]
        points = 0.75 * self.directions()  # well inside the image, far from the centre
        cols = ((points[:, 0] + 1) / 2 * size).long().clamp(0, size - 1)
        rows = ((1 - points[:, 1]) / 2 * size).long().clamp(0, size - 1)
        return images[..., 0, rows, cols] > 0.5


def make_dataset(junction: Junction, n: int, size: int,
                 generator: torch.Generator | None = None) -> TensorDataset:
    """n scenes: ``(images (n, 1, size, size), futures (n, T, 2), open masks (n, K), exits (n,))``.

    Models read the first two tensors; the open masks and the sampled exits are the ground truth
    that the metrics use.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    open_mask = junction.sample_open(n, generator)
    y, modes = junction.sample(open_mask, generator=generator)
    return TensorDataset(junction.render(open_mask, size), y, open_mask, modes)
