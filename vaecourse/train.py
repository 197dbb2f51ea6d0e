"""One fit loop for every model of the book (chapter 6 onwards, adversarial models included).

A training iteration is a list of :class:`Step` s, each an optimizer and the loss it minimizes:
one step for a VAE (the model's own ``loss(batch) -> (loss, metrics)``), two alternating steps
for a two-player model (a discriminator step, then a generator step, on the same batch). The
loop moves batches to the device, takes the steps in order, shows a tqdm bar with the running
loss, calls an optional ``before_epoch(epoch, model)`` hook (e.g. :func:`kl_annealing`),
evaluates on a test loader after each epoch and keeps a history of the per-epoch means.
Wiring data to a model is the job of :mod:`vaecourse.recipes`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vaecourse import config

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


@dataclass
class Step:
    """One update of a training iteration: ``optimizer`` minimizes ``loss_fn(model, batch)``.

    With several steps (a two-player game), each one's metrics are recorded as
    ``"{name}_{metric}"``; a single step's metrics keep their names.
    """

    optimizer: torch.optim.Optimizer
    loss_fn: LossFn = model_loss
    name: str = ""


def batch_size(batch: object) -> int:
    """The number of examples in a batch (the first dimension of its first tensor)."""
    return len(batch[0] if isinstance(batch, (tuple, list)) else batch)


def step_metrics(steps: Sequence[Step], index: int, metrics: dict[str, float]
                 ) -> dict[str, float]:
    """The metrics of step ``index``, prefixed with its name when there are several steps."""
    if len(steps) == 1:
        return metrics
    return {f"{steps[index].name}_{key}": value for key, value in metrics.items()}


def run_epoch(model: nn.Module, loader: Iterable, steps: Sequence[Step], device: torch.device,
              train: bool = True, bar: tqdm | None = None) -> dict[str, float]:
    """One pass over ``loader``: take every step on every batch (``train``), or evaluate every
    step's loss without gradients.

    Returns the example-weighted mean of every metric.
    """
    model.train(train)
    totals: dict[str, float] = {}
    count = 0
    for batch in loader:
        batch = to_device(batch, device)
        n = batch_size(batch)
        count += n
        for i, step in enumerate(steps):
            with torch.set_grad_enabled(train):
                loss, metrics = step.loss_fn(model, batch)
            if train:
                step.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step.optimizer.step()
            for name, value in step_metrics(steps, i, metrics).items():
                totals[name] = totals.get(name, 0.0) + n * value
        if bar is not None:
            bar.update(1)
            shown = next((k for k in totals if k.endswith("loss")), None)
            bar.set_postfix(loss=f"{totals[shown] / count:.2f}" if shown else "")
    if count == 0:
        raise ValueError("loader must yield at least one batch, got an empty loader")
    return {name: total / count for name, total in totals.items()}


def check_steps(steps: Sequence[Step]) -> None:
    """Raise ValueError unless ``steps`` is a non-empty list of Steps with distinct names."""
    if not steps or not all(isinstance(s, Step) for s in steps):
        raise ValueError(f"steps must be a non-empty list of train.Step, got {steps!r:.80}")
    names = [s.name for s in steps]
    if len(steps) > 1 and (len(set(names)) < len(names) or "" in names):
        raise ValueError(f"several steps need distinct, non-empty names, got {names}")


def fit(model: nn.Module, train_loader: Iterable, *, epochs: int,
        test_loader: Iterable | None = None, optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3, loss_fn: LossFn = model_loss, steps: Sequence[Step] | None = None,
        seed: int | None = None, device: torch.device | None = None,
        before_epoch: Callable[[int, nn.Module], None] | None = None,
        checkpoint: str | Path | None = None, keep_best: bool = False,
        progress: bool = True) -> History:
    """Train ``model`` for ``epochs`` epochs and return its history.

    Each batch takes the ``steps`` in order; without ``steps`` there is one: ``optimizer``
    (default Adam with ``lr``) on ``loss_fn`` (default the model's ``loss``). ``seed`` seeds
    every generator first (recipes seed once themselves and leave it None). Returns
    ``{"train": [...], "test": [...]}``, the per-epoch metric means, and saves a checkpoint
    after the last epoch when ``checkpoint`` is a path. ``keep_best`` is early stopping
    (chapter 8): the model ends with the weights of the epoch whose ``test_loader`` loss was
    lowest, so ``test_loader`` must then hold validation data, not the test set.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if steps is not None and optimizer is not None:
        raise ValueError("give either steps or optimizer (with loss_fn), not both")
    if keep_best and test_loader is None:
        raise ValueError("keep_best needs a test_loader of validation data to pick the best epoch")
    if seed is not None:
        config.seed_everything(seed)
    device = torch.device(config.device() if device is None else device)
    model.to(device)
    if steps is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr) if optimizer is None else optimizer
        steps = [Step(optimizer, loss_fn)]
    check_steps(steps)
    history: History = {"train": [], "test": []}
    best_loss, best_state = math.inf, None
    total = epochs * len(train_loader) if hasattr(train_loader, "__len__") else None
    with tqdm(total=total, desc="fit", disable=not progress, leave=False) as bar:
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch, model)
            history["train"].append(run_epoch(model, train_loader, steps, device, True, bar))
            if test_loader is not None:  # on a forked RNG: evaluating leaves training unchanged
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    history["test"].append(run_epoch(model, test_loader, steps, device, False))
                if keep_best and history["test"][-1]["loss"] < best_loss:
                    best_loss = history["test"][-1]["loss"]
                    best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, [s.optimizer for s in steps], history)
    return history


def late_fall(losses: Sequence[float]) -> float:
    """How much a loss curve still falls at its end: the mean of its third quarter minus the mean
    of its last quarter (in the loss's units; near 0 or negative once the curve has flattened).

    Chapter 9 calls a curve flat when this is below 1 nat or 1% of the last quarter's mean.
    """
    if len(losses) < 4:
        raise ValueError(f"a loss curve needs at least 4 epochs to have quarters, "
                         f"got {len(losses)}")
    q = len(losses) // 4
    values = torch.tensor(list(losses), dtype=torch.float64)
    return (values[-2 * q:-q].mean() - values[-q:].mean()).item()


def kl_annealing(warmup_epochs: int, attribute: str = "beta") -> Callable[[int, nn.Module], None]:
    """A ``before_epoch`` hook raising ``model.<attribute>`` linearly from 1/warmup to 1."""
    if warmup_epochs < 1:
        raise ValueError(f"warmup_epochs must be >= 1, got {warmup_epochs}")

    def hook(epoch: int, model: nn.Module) -> None:
        setattr(model, attribute, min(1.0, (epoch + 1) / warmup_epochs))

    return hook


def as_list(optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None
            ) -> list[torch.optim.Optimizer]:
    """No optimizer, one, or several, as a list."""
    if optimizers is None:
        return []
    return [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else list(optimizers)


def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None
                    = None, history: History | None = None) -> None:
    """Save the model's (and the optimizers') state and the history to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(),
                "optimizers": [o.state_dict() for o in as_list(optimizers)],
                "history": history}, path)


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None
                    = None) -> History | None:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and optimizers,
    given in the order they were saved)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=config.module_device(model), weights_only=False)
    model.load_state_dict(state["model"])
    optimizers = as_list(optimizers)
    if optimizers and len(optimizers) != len(state["optimizers"]):
        raise ValueError(f"the checkpoint holds {len(state['optimizers'])} optimizer states, "
                         f"got {len(optimizers)} optimizers")
    for optimizer, saved in zip(optimizers, state["optimizers"], strict=False):
        optimizer.load_state_dict(saved)
    return state["history"]
