"""Classifiers that measure: the digit classifier of chapter 6 and Part IV, the factor
classifier of chapters 14 and 15 (:class:`FactorClassifier`).

Chapter 6 asks whether reconstructions keep their class, which classes prior samples fall into
and how the class changes along an interpolation or an edit. A person can look at a figure; the
book measures instead, with this classifier trained on the training digits (its test accuracy is
printed where it is used). It reads 28x28 images with values in [0, 1]: grey levels, binary
pixels or a decoder's Bernoulli means. Training mixes grey and freshly binarized digits so that
it reads both kinds of input (the chapters feed it both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaecourse import config
from vaecourse.data import mnist

CLASSES = 10


class DigitClassifier(nn.Module):
    """Two 5x5 convolutions with max pooling and a hidden layer of ``hidden`` units -> 10 logits.

    ``loss(batch)`` is the cross-entropy of a batch ``(x, labels)``, where each image is
    replaced by a binarization of itself with probability 1/2 (the training mix above).
    """

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(  # 1x28x28 -> 16x14x14 -> 32x7x7 -> hidden -> 10
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, CLASSES),
        )

    def forward(self, x: Tensor) -> Tensor:
        """The class logits (B, 10) of images ``x`` of shape (B, 784) or (B, 1, 28, 28)."""
        return self.net(x.flatten(1))

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of a batch of (images, labels) with half the images binarized afresh."""
        x, labels = batch
        flip = torch.rand(len(x), 1, device=x.device) < 0.5
        x = torch.where(flip, torch.bernoulli(x.flatten(1)), x.flatten(1))
        logits = self(x)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


@torch.no_grad()
def predict(classifier: nn.Module, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """The predicted class (N,) and its probability (N,) for images in [0, 1] of shape (N, 784).

    The classifier is put in eval mode; the images go to its device in batches.
    """
    mnist.check_unit(images)
    classifier.eval()
    device = next(classifier.parameters()).device
    probs = torch.cat([F.softmax(classifier(chunk.to(device)), -1).cpu()
                       for chunk in images.flatten(1).split(batch_size)])
    confidence, label = probs.max(-1)
    return label, confidence


class FactorClassifier(nn.Module):
    """Reads every factor of a 32x32 factor image (chapters 14 and 15): one softmax per factor.

    The measuring instrument of the attribute chapters, trained on real images
    (:mod:`vaecourse.data.factors`): two 5x5 convolutions of ``width`` and ``2 * width``
    channels with max pooling, a hidden layer of ``hidden`` units, then ``sum(sizes)`` logits,
    ``sizes[k]`` for factor k. ``loss(batch)`` is the sum over factors of the cross-entropies
    of a batch ``(images, factors)``.
    """

    def __init__(self, sizes: tuple[int, ...], width: int = 16, hidden: int = 128):
        super().__init__()
        self.sizes = tuple(sizes)
        self.net = nn.Sequential(  # 1x32x32 -> w x 16 x 16 -> 2w x 8 x 8 -> hidden -> sum(sizes)
            nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 8 * 8, hidden), nn.ReLU(),
            nn.Linear(hidden, sum(self.sizes)),
        )

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """One tensor of logits (B, sizes[k]) per factor k, for images (B, 1, 32, 32)."""
        return self.net(images).split(self.sizes, dim=-1)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Sum over the factors of the cross-entropy, and the mean accuracy over factors."""
        images, factors = batch
        logits = self(images)
        loss = sum(F.cross_entropy(lk, factors[:, k]) for k, lk in enumerate(logits))
        accuracy = torch.stack([(lk.argmax(-1) == factors[:, k]).float().mean()
                                for k, lk in enumerate(logits)]).mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}


@torch.no_grad()
def predict_factors(classifier: FactorClassifier, images: Tensor, batch_size: int = 1000
                    ) -> Tensor:
    """The most probable value of every factor, (N, K) int64, for images (N, 1, 32, 32) in [0, 1].

    The classifier is put in eval mode; the images go to its device in batches.
    """
    mnist.check_unit(images)
    classifier.eval()
    device = config.module_device(classifier)
    return torch.cat([torch.stack([lk.argmax(-1) for lk in classifier(chunk.to(device))], 1).cpu()
                      for chunk in images.split(batch_size)])
