"""Kingma et al. 2014's M2: semi-supervised learning with a VAE (chapter 16 (semi-supervised)).

The label y is a latent variable that is observed for some images only. The generative model is
p(y) p(z) p(x | y, z), with y uniform over ``classes`` labels, z ~ N(0, I) and a Bernoulli decoder
p(x | y, z); the inference model is q(z | x, y) (a diagonal Gaussian) and q(y | x) (a
categorical: the classifier that the method is after). Kingma et al. write the bounds with
minus signs, so that L and U are losses:

* labelled: log p(x, y) >= E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))
  = -L(x, y) (:func:`labelled_bound`, with the KL in closed form);
* unlabelled: log p(x) >= sum_y q(y | x) (-L(x, y)) + H(q(y | x)) = -U(x)
  (:func:`unlabelled_bound`, from the per-label bounds (B, Y) and the classifier's logits);
* classification: the bounds alone train q(y | x) on the unlabelled images only, so the
  objective adds alpha times -log q(y | x) on the labelled ones (:func:`classification_loss`):
  J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha sum_labelled -log q(y | x).

:func:`semi_supervised_loss` is J^alpha per example (the two sums divided by the number of
images, the classification term averaged over the labelled ones); :class:`M2` is the MLP model
whose :meth:`M2.loss` evaluates it on a labelled and an unlabelled batch. Its ELBOs use one
sample z per image and label, the unlabelled one sums over all labels exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecourse import gaussian
from vaecourse.models.cvae import mlp
from vaecourse.models.vae import reconstruction_nll


def _check_logits(name: str, logits: Tensor) -> None:
    """Raise ValueError unless ``logits`` is a floating-point tensor (B, Y)."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        given = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a floating-point tensor (B, Y), got {given}")


def _check_labels(y: Tensor, classes: int, n: int) -> None:
    """Raise ValueError unless ``y`` holds n int64 labels in 0..classes - 1."""
    if (not isinstance(y, Tensor) or y.shape != (n,) or y.dtype != torch.int64
            or (n and (y.min() < 0 or y.max() >= classes))):
        given = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y)
        raise ValueError(f"y must be int64 labels in 0..{classes - 1} of shape ({n},), "
                         f"got {given}")


def labelled_bound(log_likelihood: Tensor, kl: Tensor, classes: int) -> Tensor:
    """-L(x, y) = log p(x | y, z) + log p(y) - KL(q(z | x, y) || p(z)), p(y) = 1 / classes.

    ``log_likelihood`` is a (one-sample) estimate of E_q[log p(x | y, z)] and ``kl`` the closed
    form, both per example (B,).
    """
    return log_likelihood - kl - math.log(classes)


def unlabelled_bound(label_elbos: Tensor, logits: Tensor) -> Tensor:
    """-U(x) = sum_y q(y | x) (-L(x, y)) + H(q(y | x)), per example: (B, Y), (B, Y) -> (B,).

    ``label_elbos[b, y]`` is -L(x_b, y) for every label y; ``logits`` are q(y | x)'s.
    """
    _check_logits("logits", logits)
    if not isinstance(label_elbos, Tensor) or label_elbos.shape != logits.shape:
        given = tuple(label_elbos.shape) if isinstance(label_elbos, Tensor) else type(label_elbos)
        raise ValueError(f"label_elbos must have the shape of logits, {tuple(logits.shape)}, "
                         f"got {given}")
    log_q = F.log_softmax(logits, dim=-1)
    q = log_q.exp()
    return (q * (label_elbos - log_q)).sum(-1)  # sum_y q (-L) - sum_y q log q


def classification_loss(logits: Tensor, y: Tensor) -> Tensor:
    """-log q(y | x) of the labels ``y`` (B,) under the classifier's ``logits`` (B, Y): (B,)."""
    _check_logits("logits", logits)
    _check_labels(y, logits.shape[1], len(logits))
    return F.cross_entropy(logits, y, reduction="none")


def semi_supervised_loss(labelled_elbo: Tensor, unlabelled_elbo: Tensor,
                         labelled_logits: Tensor, y: Tensor, alpha: float) -> Tensor:
    """J^alpha per example: [sum_l L(x, y) + sum_u U(x)] / (n_l + n_u) + alpha mean_l -log q(y|x).

    ``labelled_elbo`` (n_l,) holds -L(x, y) of the labelled images, ``unlabelled_elbo`` (n_u,)
    -U(x) of the unlabelled ones (:func:`unlabelled_bound`), ``labelled_logits`` (n_l, Y) the
    classifier's logits of the labelled images and ``y`` (n_l,) their labels.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if labelled_elbo.dim() != 1 or unlabelled_elbo.dim() != 1:
        raise ValueError(f"labelled_elbo and unlabelled_elbo must be per-example bounds (n,), "
                         f"got shapes {tuple(labelled_elbo.shape)} and "
                         f"{tuple(unlabelled_elbo.shape)}")
    if len(labelled_elbo) != len(labelled_logits):
        raise ValueError(f"labelled_elbo and labelled_logits must have the same number of "
                         f"rows, got {len(labelled_elbo)} and {len(labelled_logits)}")
    bounds = torch.cat([labelled_elbo, unlabelled_elbo])
    return -bounds.mean() + alpha * classification_loss(labelled_logits, y).mean()


class M2(nn.Module):
    """MLP classifier q(y | x), encoder q(z | x, y) and Bernoulli decoder p(x | y, z) (chapter 16).

    Images are flattened to ``x_dim`` pixels in [0, 1] (binarized for a true Bernoulli
    likelihood); labels are int64 in 0..classes - 1 and enter the networks one-hot. ``alpha``
    weighs the classification term of :meth:`loss`.
    """

    def __init__(self, x_dim: int, classes: int = 10, latent: int = 20, hidden: int = 256,
                 alpha: float = 1.0):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.classes, self.latent, self.alpha = classes, latent, alpha
        self.classifier = mlp([x_dim, hidden, hidden, classes])
        self.encoder = mlp([x_dim + classes, hidden, hidden, 2 * latent])
        self.decoder = mlp([latent + classes, hidden, hidden, x_dim])

    def one_hot(self, y: Tensor) -> Tensor:
        """The labels ``y`` (B,) as float one-hot vectors (B, classes)."""
        _check_labels(y, self.classes, len(y))
        return F.one_hot(y, self.classes).float()

    def classify(self, x: Tensor) -> Tensor:
        """The logits of q(y | x), (B, classes)."""
        return self.classifier(x.flatten(1))

    def encode(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | x, y), each (B, latent)."""
        mu, logvar = self.encoder(torch.cat([x.flatten(1), self.one_hot(y)], -1)).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """The Bernoulli logits of p(x | y, z), (B, x_dim)."""
        return self.decoder(torch.cat([z, self.one_hot(y)], -1))

    def elbo(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-L(x, y) with one sample z ~ q(z | x, y) and the KL in closed form, per example (B,)."""
        mu, logvar = self.encode(x, y)
        z = gaussian.reparameterize(mu, logvar, generator=generator)
        log_likelihood = -reconstruction_nll(self.decode(z, y), x.flatten(1))
        return labelled_bound(log_likelihood, gaussian.kl_std_normal(mu, logvar), self.classes)

    def label_elbos(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-L(x, y) for every label y, (B, classes): one batch of B * classes bounds."""
        labels = torch.arange(self.classes, device=x.device).repeat_interleave(len(x))
        elbos = self.elbo(x.flatten(1).repeat(self.classes, 1), labels, generator)
        return elbos.reshape(self.classes, len(x)).T

    def loss(self, x_labelled: Tensor, y: Tensor, x_unlabelled: Tensor,
             generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """:func:`semi_supervised_loss` of a labelled and an unlabelled batch, and its metrics."""
        labelled_elbo = self.elbo(x_labelled, y, generator)
        unlabelled_elbo = unlabelled_bound(self.label_elbos(x_unlabelled, generator),
                                           self.classify(x_unlabelled))
        labelled_logits = self.classify(x_labelled)
        loss = semi_supervised_loss(labelled_elbo, unlabelled_elbo, labelled_logits, y,
                                    self.alpha)
        accuracy = (labelled_logits.argmax(-1) == y).float().mean()
        metrics = {"loss": loss.item(), "labelled_elbo": labelled_elbo.mean().item(),
                   "unlabelled_elbo": unlabelled_elbo.mean().item(),
                   "labelled_accuracy": accuracy.item()}
        return loss, metrics
