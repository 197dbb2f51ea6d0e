"""Generative adversarial networks on MNIST: a small DCGAN and its losses (chapter 11 (VAEs and
GANs); chapter 12 reuses the networks).

A GAN (Goodfellow et al. 2014) trains a generator G(z), z ~ N(0, I), against a discriminator
D(x) = sigmoid(l(x)) that tells data from samples. Both play the minimax game

    min_G max_D V(D, G),   V(D, G) = E_x log D(x) + E_z log(1 - D(G(z))).          (GAN value)

For a fixed G with sample density p_g the best discriminator is

    D*(x) = p_data(x) / (p_data(x) + p_g(x)),                       (optimal discriminator)

and at D* the value is V(D*, G) = 2 JS(p_data || p_g) - log 4, minimal (-log 4) iff p_g = p_data.

The networks follow DCGAN (Radford et al. 2016): strided (transposed) convolutions instead of
pooling, batch norm, ReLU in the generator and LeakyReLU in the discriminator, and no fully
connected hidden layer beyond the projection of z (and the discriminator's final logit):

* :class:`Generator`: z (B, latent) -> project to (2w, 7, 7) -> (w, 14, 14) -> images
  (B, 1, 28, 28) in [0, 1] (a sigmoid output, the range of the book's MNIST);
* :class:`Discriminator`: images (B, 784) or (B, 1, 28, 28) -> (w, 14, 14) -> (2w, 7, 7) ->
  logit (B,); :meth:`Discriminator.logits_and_features` also returns the flattened output of its
  l-th block, the feature space in which the VAE/GAN of chapter 12 measures reconstructions.

The losses take discriminator logits l, never probabilities, and are written with
``F.logsigmoid`` (log D = logsigmoid(l), log(1 - D) = logsigmoid(-l)), which is finite for
every finite logit (also at +-100, where sigmoid rounds to 0 or 1):

* :func:`gan_value`: V(D, G) estimated by batch means;
* :func:`discriminator_loss`: -V, the cross-entropy the discriminator minimizes;
* :func:`generator_loss_saturating`: E log(1 - D(G(z))), the minimax generator loss, whose
  gradient vanishes when D confidently rejects the samples (early in training);
* :func:`generator_loss_nonsaturating`: -E log D(G(z)), the loss used in practice: same fixed
  point, strong gradients where the saturating one has none.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_SHAPE = (1, 28, 28)
DATA_DIM = 28 * 28
LEAK = 0.2  # the LeakyReLU slope of DCGAN's discriminator


def as_images(x: Tensor) -> Tensor:
    """``x`` of shape (B, 784) or (B, 1, 28, 28) as (B, 1, 28, 28); anything else is an error."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        given = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images must be a floating-point torch.Tensor, got {given}")
    if tuple(x.shape[1:]) not in ((DATA_DIM,), IMAGE_SHAPE):
        raise ValueError(f"images must have shape (B, 784) or (B, 1, 28, 28), got {tuple(x.shape)}")
    return x.reshape(-1, *IMAGE_SHAPE)


def downsampling_blocks(width: int) -> nn.ModuleList:
    """The two strided-convolution blocks 1x28x28 -> w x 14 x 14 -> 2w x 7 x 7 (LeakyReLU).

    Shared by the discriminator and the VAE/GAN encoder. As in DCGAN the first block has no
    batch norm (it would normalize the input images).
    """
    return nn.ModuleList([
        nn.Sequential(nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(LEAK)),
        nn.Sequential(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
                      nn.BatchNorm2d(2 * width), nn.LeakyReLU(LEAK)),
    ])


class Generator(nn.Module):
    """DCGAN generator z (B, latent) -> images (B, 1, 28, 28) in [0, 1] (chapter 11).

    ``width`` w sets the channels: the projection of z gives 2w x 7 x 7, then two stride-2
    transposed convolutions give w x 14 x 14 and 1 x 28 x 28.
    """

    def __init__(self, latent: int = 64, width: int = 64):
        super().__init__()
        check_sizes(latent=latent, width=width)
        self.latent, self.width = latent, width
        self.net = nn.Sequential(
            nn.Linear(latent, 2 * width * 7 * 7, bias=False), nn.Unflatten(1, (2 * width, 7, 7)),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
        )

    def logits(self, z: Tensor) -> Tensor:
        """The pre-sigmoid outputs, shape (B, 1, 28, 28)."""
        if z.dim() != 2 or z.shape[1] != self.latent:
            raise ValueError(f"z must have shape (B, {self.latent}), got {tuple(z.shape)}")
        return self.net(z)

    def forward(self, z: Tensor) -> Tensor:
        """Images G(z) = sigmoid(logits), shape (B, 1, 28, 28)."""
        return torch.sigmoid(self.logits(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images G(z), z ~ N(0, I) drawn with ``generator`` (a CPU generator works)."""
        check_sizes(n=n)
        weight = next(self.parameters())
        z = torch.randn(n, self.latent, generator=generator, dtype=weight.dtype)
        return self(z.to(weight.device))


class Discriminator(nn.Module):
    """DCGAN discriminator images -> logit l(x), D(x) = sigmoid(l(x)) (chapters 11 and 12).

    Block 1 gives w x 14 x 14 features, block 2 gives 2w x 7 x 7; a linear layer maps the
    flattened block-2 features to one logit.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        check_sizes(width=width)
        self.width = width
        self.blocks = downsampling_blocks(width)
        self.head = nn.Linear(2 * width * 7 * 7, 1)

    def feature_dim(self, layer: int) -> int:
        """The number of features of block ``layer`` (1 or 2)."""
        check_layer(layer, len(self.blocks))
        return self.width * 14 * 14 if layer == 1 else 2 * self.width * 7 * 7

    def logits_and_features(self, x: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        """The logits (B,) and the flattened output Dis_l(x) (B, F) of block ``layer`` (1 or 2)."""
        check_layer(layer, len(self.blocks))
        h, features = as_images(x), None
        for i, block in enumerate(self.blocks, start=1):
            h = block(h)
            if i == layer:
                features = h.flatten(1)
        return self.head(h.flatten(1)).squeeze(1), features

    def forward(self, x: Tensor) -> Tensor:
        """The logits l(x), shape (B,)."""
        return self.logits_and_features(x, len(self.blocks))[0]


def check_sizes(**sizes: int) -> None:
    """Raise ValueError unless every size is an int >= 1."""
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def check_layer(layer: int, n_layers: int) -> None:
    """Raise ValueError unless ``layer`` is one of 1..n_layers."""
    if not isinstance(layer, int) or not 1 <= layer <= n_layers:
        raise ValueError(f"layer must be an int in 1..{n_layers}, got {layer!r}")


def check_logits(name: str, logits: Tensor) -> Tensor:
    """Raise ValueError unless ``logits`` is a non-empty finite floating tensor."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        given = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a floating-point torch.Tensor of logits, got {given}")
    if logits.numel() == 0 or not torch.isfinite(logits).all():
        raise ValueError(f"{name} must be non-empty and finite, got {logits}")
    return logits


def gan_value(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """V(D, G) = mean log D(x) + mean log(1 - D(G(z))), from the logits of a data batch and of a
    sample batch (the two batch sizes may differ)."""
    real, fake = check_logits("real_logits", real_logits), check_logits("fake_logits", fake_logits)
    return F.logsigmoid(real).mean() + F.logsigmoid(-fake).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-V(D, G): the binary cross-entropy of data (label 1) and samples (label 0), batch means.

    Equal to ``F.binary_cross_entropy_with_logits`` of each batch against its label, summed.
    At logits 0 (D = 1/2 everywhere) it is 2 log 2.
    """
    return -gan_value(real_logits, fake_logits)


def generator_loss_saturating(fake_logits: Tensor) -> Tensor:
    """The minimax generator loss mean log(1 - D(G(z))) = mean logsigmoid(-l) (to minimize).

    Its gradient d/dl = -sigmoid(l) vanishes as l -> -inf, where D rejects the samples.
    """
    return F.logsigmoid(-check_logits("fake_logits", fake_logits)).mean()


def generator_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """The non-saturating generator loss -mean log D(G(z)) = -mean logsigmoid(l).

    Its gradient d/dl = -(1 - sigmoid(l)) tends to -1 as l -> -inf: it keeps pushing the
    samples while D rejects them, and, like the saturating loss, it is minimized by D(G(z)) -> 1.
    """
    return -F.logsigmoid(check_logits("fake_logits", fake_logits)).mean()


def optimal_discriminator(p_data: Tensor | np.ndarray | float, p_g: Tensor | np.ndarray | float
                          ) -> Tensor | np.ndarray | float:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) from the two densities at the same points.

    Takes and returns tensors, arrays or floats. Densities must be finite and >= 0, and not both
    0 at a point (D* is undefined outside both supports).
    """
    a, b = torch.as_tensor(p_data), torch.as_tensor(p_g)
    if a.shape != b.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all() and (a >= 0).all()
            and (b >= 0).all()):
        raise ValueError("p_data and p_g must be finite densities >= 0")
    if ((a + b) == 0).any():
        raise ValueError("D* is undefined where p_data + p_g = 0, got such a point")
    return p_data / (p_data + p_g)


def real_images(batch: Tensor | tuple | list) -> Tensor:
    """The images of a batch (images, or ``(images, labels)``) as (B, 1, 28, 28)."""
    return as_images(batch[0] if isinstance(batch, (tuple, list)) else batch)


class GAN(nn.Module):
    """A generator and a discriminator trained against each other (chapter 11).

    The two players are two :class:`vaecourse.train.Step` s of the book's fit loop, one per
    network, on the same batch: :meth:`discriminator_step` (minimizes -V, the generator's
    samples detached) and then :meth:`generator_step` (the non-saturating loss on fresh samples).
    """

    def __init__(self, latent: int = 64, width: int = 64):
        super().__init__()
        self.generator = Generator(latent, width)
        self.discriminator = Discriminator(width)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images of the generator (:meth:`Generator.sample`)."""
        return self.generator.sample(n, generator)

    def discriminator_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """-V(D, G) on a data batch and as many samples, and the mean D on each."""
        x = real_images(batch)
        real, fake = self.discriminator(x), self.discriminator(self.generator.sample(len(x))
                                                               .detach())
        loss = discriminator_loss(real, fake)
        return loss, {"loss": loss.item(), "d_real": torch.sigmoid(real).mean().item(),
                      "d_fake": torch.sigmoid(fake).mean().item()}

    def generator_step(self, batch: Tensor | tuple | list) -> tuple[Tensor, dict[str, float]]:
        """-mean log D(G(z)) on as many fresh samples as the batch has images."""
        loss = generator_loss_nonsaturating(self.discriminator(
            self.generator.sample(len(real_images(batch)))))
        return loss, {"loss": loss.item()}


def invert(generator: Generator, x: Tensor, steps: int = 200, lr: float = 0.05,
           seed: int = 0) -> Tensor:
    """GAN inversion: z* = argmin_z ||x - G(z)||^2 per image, by Adam from z ~ N(0, I) (seeded).

    A GAN has no encoder; mapping an image back to its code is an optimization per image
    (chapter 11). ``x`` (B, 784) or (B, 1, 28, 28); returns z* (B, latent). The generator is
    put in eval mode and left unchanged. Gradients are on inside, so it also works where the
    caller turned them off (``torch.no_grad``).
    """
    check_sizes(steps=steps)
    target = as_images(x)
    generator.eval()
    weight = next(generator.parameters())
    z = torch.randn(len(target), generator.latent, dtype=weight.dtype,
                    generator=torch.Generator().manual_seed(seed)).to(weight.device)
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = (generator(z) - target).pow(2).flatten(1).sum(1).sum()
            grad, = torch.autograd.grad(loss, z)
            z.grad = grad
            optimizer.step()
    return z.detach()
