"""Metrics of the book's models, one section per part.

VAE on MNIST (chapters 6 and 7): the test ELBO with its reconstruction and KL parts, log p(x)
estimated with K importance samples (Burda et al. 2016), and active units. Conditional VAE
(chapter 8): -log p(x | y) by importance sampling. Colorization (chapter 9): best-of-k error,
diversity, chroma ratio, hue coverage. Forecasting (chapter 10): minADE/minFDE, mode coverage
and total variation, KDE-NLL. A metric draws from torch's generators as the caller seeded them
(a recipe seeds once); it never reseeds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import scipy.stats
import torch
from torch import Tensor, nn

from vaecourse import config, estimators
from vaecourse.data import colorization as color_data
from vaecourse.data import trajectories
from vaecourse.models import forecasting
from vaecourse.models import vae as vae_models

# ---------------------------------------------------------------------------------------------
# VAE on MNIST (chapters 6 and 7)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def elbo_parts(model: vae_models.VAE, x: Tensor, batch_size: int = 500,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """Mean one-sample ELBO of the images ``x`` with its reconstruction and KL terms, in nats."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    device = config.module_device(model)
    for xb in x.split(batch_size):
        nelbo, recon, kl_per_dim = vae_models.negative_elbo(model, xb.to(device), generator)
        parts = torch.stack([-nelbo.sum(), recon.sum(), kl_per_dim.sum()])
        totals += parts.double().cpu()
    elbo, recon, kl = (totals / len(x)).tolist()
    return {"elbo": elbo, "reconstruction": recon, "kl": kl}


@torch.no_grad()
def importance_log_weights(model: vae_models.VAE, x: Tensor, samples: int, batch_size: int = 100,
                           max_elements: int = 2**24, generator: torch.Generator | None = None
                           ) -> Tensor:
    """``log w_k = log p(x, z_k) - log q(z_k|x)``, z_k ~ q(z|x), for every image: shape (N, K).

    The K = ``samples`` weights of a batch of images are drawn in chunks of samples, so that a
    chunk's decoder output holds at most ``max_elements`` numbers; only the weights are kept.
    """
    check_count("samples", samples)
    check_count("batch_size", batch_size)
    model.eval()
    device = config.module_device(model)
    rows = []
    for xb in x.split(batch_size):
        chunk = max(1, max_elements // (len(xb) * vae_models.DATA_DIM))
        xb = xb.to(device)
        rows.append(estimators.chunked_log_weights(
            lambda k, xb=xb: vae_models.log_weights(model, xb, k, generator).cpu(), samples,
            chunk))
    return torch.cat(rows)


def log_likelihood(model: vae_models.VAE, x: Tensor, samples: int, batch_size: int = 100,
                   max_elements: int = 2**24, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor]:
    """Per-image ``log p(x) ~ log (1/K) sum_k w_k`` and the ELBO ``(1/K) sum_k log w_k``.

    Both come from the same K = ``samples`` weights of :func:`importance_log_weights`
    (Burda et al. 2016), so their difference estimates the gap log p(x) - ELBO.
    """
    log_w = importance_log_weights(model, x, samples, batch_size, max_elements, generator)
    return estimators.log_mean_exp(log_w), estimators.elbo(log_w)


@torch.no_grad()
def mean_codes(model: vae_models.VAE, x: Tensor, batch_size: int = 500) -> Tensor:
    """The posterior means E_q[z | x] of the images ``x``, (N, latent), on the CPU."""
    model.eval()
    return torch.cat([model.encode(xb.to(config.module_device(model)))[0].cpu()
                      for xb in x.split(batch_size)])


def active_units(model: vae_models.VAE, x: Tensor, threshold: float = 0.01,
                 batch_size: int = 500) -> tuple[int, Tensor]:
    """Count latents with ``Var_x(E_q[z_j | x]) > threshold``; return (count, variances)."""
    mu = mean_codes(model, x, batch_size)
    if len(mu) < 2:
        raise ValueError(f"x must hold at least 2 images to compute a variance, got {len(mu)}")
    variances = mu.var(dim=0)
    return int((variances > threshold).sum()), variances


def check_count(name: str, value: object) -> int:
    """Raise ValueError unless ``value`` is an int >= 1 (a number of images, samples, ...)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def mean_and_se(values: Tensor) -> tuple[float, float]:
    """The mean of per-example values and its standard error ``std / sqrt(n)``."""
    values = values.double()
    se = (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")
    return values.mean().item(), se


def over_seeds(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of one result repeated over seeds (s.e. NaN for one seed)."""
    return mean_and_se(torch.tensor([float(v) for v in values], dtype=torch.float64))


def seed_mean(values: Tensor) -> tuple[float, float]:
    """Per-example values (seeds, N) of models trained with different seeds on the same examples:
    their mean, and the standard error over seeds of the per-seed means (with one seed, the
    standard error over the N examples)."""
    if not isinstance(values, Tensor) or values.dim() != 2:
        raise ValueError(f"values must be a tensor of shape (seeds, N), got "
                         f"{tuple(values.shape) if isinstance(values, Tensor) else values!r:.60}")
    values = values.double()
    return mean_and_se(values.mean(1) if len(values) > 1 else values[0])


def seed_difference(a: Tensor, b: Tensor) -> tuple[float, float]:
    """The difference of two models' per-example values ``a - b``, each (seeds, N) on the same
    examples: :func:`seed_mean` of ``a - b`` (paired per seed, or per example with one seed)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must have the same shape (seeds, N), got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return seed_mean(a - b)


def pm(mean: float, se: float, digits: int = 2) -> str:
    """``"mean ± se"`` with ``digits`` decimals; just the mean when the s.e. is NaN (one seed)."""
    if math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def evaluate_vae(model: vae_models.VAE, x: Tensor, samples: int, eval_size: int | None = None,
                 generator: torch.Generator | None = None) -> dict[str, float]:
    """The book's VAE metrics on binarized test images ``x``, in nats per example.

    On all of ``x``: ``test_elbo`` (one sample per image) with ``test_reconstruction`` and
    ``test_kl``, and ``active_units``. On the first ``eval_size`` images (None: all), with
    ``samples`` importance samples each: ``test_log_likelihood``, the ``samples``-sample ELBO
    ``eval_elbo`` and the gap ``likelihood_gap``, each with its standard error (``*_se``).
    """
    if eval_size is not None:
        check_count("eval_size", eval_size)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 images, got {len(x)}")
    parts = elbo_parts(model, x, generator=generator)
    log_px, elbo = log_likelihood(model, x[:eval_size], samples, generator=generator)
    ll, ll_se = mean_and_se(log_px)
    eval_elbo, eval_elbo_se = mean_and_se(elbo)
    gap, gap_se = mean_and_se(log_px - elbo)
    return {"test_elbo": parts["elbo"], "test_reconstruction": parts["reconstruction"],
            "test_kl": parts["kl"], "active_units": active_units(model, x)[0],
            "test_log_likelihood": ll, "test_log_likelihood_se": ll_se,
            "eval_elbo": eval_elbo, "eval_elbo_se": eval_elbo_se,
            "likelihood_gap": gap, "likelihood_gap_se": gap_se}


# ---------------------------------------------------------------------------------------------
# Conditional VAE (chapter 8)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def conditional_nll(model: estimators.ConditionalLatentVariableModel, x: Tensor, y: Tensor,
                    samples: int, batch_size: int = 50) -> Tensor:
    """Per example ``-log p(x | y)``, estimated with ``samples`` importance samples of
    q(z | x, y) (:func:`vaecourse.estimators.log_marginal_estimate`): shape (N,)."""
    check_count("samples", samples)
    check_count("batch_size", batch_size)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold as many examples, got {len(x)} and {len(y)}")
    device = config.module_device(model)
    rows = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        xb, yb = xb.to(device), yb.to(device)
        rows.append(estimators.log_marginal_estimate(
            lambda k, xb=xb, yb=yb: model.log_weights(xb, k, yb), samples).cpu())
    return -torch.cat(rows)


# ---------------------------------------------------------------------------------------------
# Colorization (chapter 9)
# ---------------------------------------------------------------------------------------------
# Colourings are ab fields in Lab units: a truth of shape (N, 2, H, W) and samples of shape
# (N, S, 2, H, W), S colourings per grey image.


def check_samples(samples: Tensor, target: Tensor) -> None:
    """Raise ValueError unless samples is (N, S, 2, H, W) for a target (N, 2, H, W)."""
    if target.dim() != 4 or target.shape[1] != 2:
        raise ValueError(f"target must have shape (N, 2, H, W), got {tuple(target.shape)}")
    if samples.dim() != 5 or samples.shape[:1] + samples.shape[2:] != target.shape:
        raise ValueError(f"samples must have shape (N, S, *{tuple(target.shape[1:])}) with "
                         f"N = {len(target)}, got {tuple(samples.shape)}")


def ab_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over pixels of the Euclidean ab distance ``||pred - target||``; broadcasts, so
    samples (N, S, 2, H, W) against a truth (N, 1, 2, H, W) give (N, S)."""
    return (pred - target).pow(2).sum(-3).sqrt().mean((-2, -1))


def best_of_k_error(samples: Tensor, target: Tensor, k: int) -> Tensor:
    """Per image, the ab error of the closest of the first k samples: shape (N,)."""
    check_samples(samples, target)
    if not isinstance(k, int) or not 1 <= k <= samples.shape[1]:
        raise ValueError(f"k must be an int in 1..{samples.shape[1]} (the samples), got {k!r}")
    return ab_error(samples[:, :k], target.unsqueeze(1)).amin(dim=1)


def diversity(samples: Tensor) -> Tensor:
    """Per image, the mean ab error between two distinct samples (over all pairs): (N,)."""
    if samples.dim() != 5 or samples.shape[1] < 2:
        raise ValueError(f"samples must have shape (N, S >= 2, 2, H, W), "
                         f"got {tuple(samples.shape)}")
    s = samples.shape[1]
    pairwise = ab_error(samples.unsqueeze(2), samples.unsqueeze(1))  # (N, S, S), zero diagonal
    return pairwise.sum((1, 2)) / (s * (s - 1))


def chroma_ratio(samples: Tensor, target: Tensor) -> float:
    """Mean chroma ``|ab|`` of the samples over the mean chroma of the truth (1: as vivid)."""
    check_samples(samples, target)
    truth = target.pow(2).sum(1).sqrt().mean()
    if truth <= 0:
        raise ValueError("target must hold some colour (its mean chroma is 0)")
    return (samples.pow(2).sum(2).sqrt().mean() / truth).item()


def hue_coverage(samples: Tensor, mask: Tensor, hues: Tensor, radius: float | None = None
                 ) -> Tensor:
    """Per image, how many of the K hues its samples produce on the object: shape (N,).

    A sample produces hue k when the mean of its ab over the object (``mask``, (N, 1, H, W))
    lies within ``radius`` of ``hues[k]`` (default: half the smallest distance between two
    hues), so a grey sample produces none.
    """
    if mask.shape != (samples.shape[0], 1, *samples.shape[-2:]):
        raise ValueError(f"mask must have shape {(samples.shape[0], 1, *samples.shape[-2:])}, "
                         f"got {tuple(mask.shape)}")
    if radius is None:
        gaps = torch.cdist(hues, hues) + torch.diag(torch.full((len(hues),), math.inf))
        radius = gaps.min().item() / 2
    m = mask.unsqueeze(1).to(samples.dtype)  # (N, 1, 1, H, W)
    mean_ab = (samples * m).sum((-2, -1)) / m.sum((-2, -1)).clamp(min=1)  # (N, S, 2)
    near = torch.cdist(mean_ab, hues.to(samples).expand(len(samples), -1, -1)) < radius
    return near.any(dim=1).sum(-1).to(samples.dtype)


def colour_field_errors(pred: Tensor, target: Tensor, saturated: float) -> dict[str, float]:
    """How well colour fields (N, 2, H, W) are reproduced, in ab units (chapter 9's ablation):

    ``ab_error``, the mean per-pixel ab distance; ``saturated_error``, the same over the pixels
    whose true chroma is at least ``saturated`` (the rare, vivid ones); ``gradient_error``, the
    mean over pixels of ``||∇pred - ∇target||`` (forward differences along x and y, over both
    channels), which is large where colour edges are misplaced or blurred.
    """
    if pred.shape != target.shape or target.dim() != 4 or target.shape[1] != 2:
        raise ValueError(f"pred and target must both have shape (N, 2, H, W), "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    vivid = target.pow(2).sum(1).sqrt() >= saturated
    if not vivid.any():
        raise ValueError(f"no target pixel has a chroma of at least saturated={saturated}")
    distance = (pred - target).pow(2).sum(1).sqrt()
    d = pred - target
    dx, dy = d[..., :-1, 1:] - d[..., :-1, :-1], d[..., 1:, :-1] - d[..., :-1, :-1]
    gradient = (dx.pow(2) + dy.pow(2)).sum(1).sqrt()
    return {"ab_error": distance.mean().item(), "saturated_error": distance[vivid].mean().item(),
            "gradient_error": gradient.mean().item()}


def colorization_metrics(samples: Tensor, target: Tensor, mask: Tensor | None = None,
                         hues: Tensor | None = None) -> dict[str, float]:
    """The chapter's table: best-of-k error (k = 1, 5, 10 when there are that many samples),
    diversity, chroma ratio, and (given ``mask`` and ``hues``) the mean hue coverage."""
    check_samples(samples, target)
    out = {f"best_of_{k}_error": best_of_k_error(samples, target, k).mean().item()
           for k in (1, 5, 10) if k <= samples.shape[1]}
    out["diversity"] = diversity(samples).mean().item()
    out["chroma_ratio"] = chroma_ratio(samples, target)
    if mask is not None and hues is not None:
        out["hue_coverage"] = hue_coverage(samples, mask, hues).mean().item()
    return out


@torch.no_grad()
def evaluate_colorizer(model: nn.Module, test: color_data.ColorData, samples: int = 10,
                       batch_size: int = 100) -> dict[str, float]:
    """:func:`colorization_metrics` of ``samples`` colourings per test image (hue coverage on
    the synthetic set, whose objects carry a mask)."""
    check_count("samples", samples)
    device = config.module_device(model)
    out = torch.cat([model.colorize(L.to(device), samples).cpu()
                     for L in test.L.split(batch_size)])
    hues = color_data.hue_ab() if test.mask is not None else None
    return colorization_metrics(out, test.ab, test.mask, hues)


# ---------------------------------------------------------------------------------------------
# Forecasting (chapter 10)
# ---------------------------------------------------------------------------------------------
# Futures have shape (B, T, 2) and samples (S, B, T, 2); open sets are boolean masks (B, K) and
# exits are integer labels. A forecaster has ``sample(images, n)`` and ``log_prob(images, y)``
# (see vaecourse.models.forecasting).


def check_futures(samples: Tensor, y: Tensor) -> None:
    """Raise ValueError unless ``samples`` is (S, B, T, 2) and ``y`` is (B, T, 2)."""
    if y.dim() != 3 or y.shape[-1] != 2:
        raise ValueError(f"y must have shape (B, T, 2), got {tuple(y.shape)}")
    if samples.dim() != 4 or samples.shape[1:] != y.shape:
        raise ValueError(f"samples must have shape (S, *y.shape) = (S, *{tuple(y.shape)}), "
                         f"got {tuple(samples.shape)}")


def displacement_errors(samples: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """minADE_S and minFDE_S per example: shapes (B,) and (B,).

    ADE_s = (1/T) sum_t ||y^s_t - y_t|| and FDE_s = ||y^s_T - y_T||; each is minimized over the S
    samples separately (the best-of-S convention of the forecasting literature).
    """
    check_futures(samples, y)
    dist = (samples - y).norm(dim=-1)  # (S, B, T)
    return dist.mean(-1).amin(0), dist[..., -1].amin(0)


def mode_frequencies(exits: Tensor, k: int) -> Tensor:
    """The fraction of the S samples of each example that went to each exit: (S, B) -> (B, K)."""
    return torch.nn.functional.one_hot(exits, k).double().mean(0)


def mode_coverage(frequencies: Tensor, open_mask: Tensor) -> float:
    """The fraction of all open exits (over the examples) that at least one sample reaches.

    ``frequencies`` (B, K) are the samples' exit frequencies, ``open_mask`` (B, K) the open sets.
    """
    if frequencies.shape != open_mask.shape:
        raise ValueError(f"open_mask must have the shape of frequencies, "
                         f"{tuple(frequencies.shape)}, got {tuple(open_mask.shape)}")
    return (((frequencies > 0) & open_mask).sum() / open_mask.sum()).item()


def mode_total_variation(frequencies: Tensor, probs: Tensor) -> Tensor:
    """TV = 1/2 sum_k |f_k - p_k| between sampled and true exit frequencies: (B, K) -> (B,)."""
    if frequencies.shape != probs.shape:
        raise ValueError(f"probs must have the shape of frequencies, {tuple(frequencies.shape)}, "
                         f"got {tuple(probs.shape)}")
    return 0.5 * (frequencies - probs).abs().sum(-1)


def kde_nll(samples: Tensor, y: Tensor, clip: float = -20.0) -> Tensor:
    """KDE-NLL of Trajectron++: -(1/T) sum_t max(log kde_t(y_t), clip), per example: (B,).

    kde_t is scipy's Gaussian KDE (Scott's bandwidth) of the S sampled positions at step t.
    """
    check_futures(samples, y)
    s, y = samples.double().cpu().numpy(), y.double().cpu().numpy()
    out = torch.empty(y.shape[0], dtype=torch.float64)
    for b in range(y.shape[0]):
        logs = [scipy.stats.gaussian_kde(s[:, b, t].T).logpdf(y[b, t])[0]
                for t in range(y.shape[1])]
        out[b] = -torch.tensor(logs).clamp(min=clip).mean()
    return out


@torch.no_grad()
def sample_in_batches(model: nn.Module, images: Tensor, n: int, batch_size: int = 100) -> Tensor:
    """``model.sample(images, n)`` on the model's device, in batches of images: (n, B, T, 2)."""
    device = config.module_device(model)
    return torch.cat([model.sample(xb.to(device), n).cpu() for xb in images.split(batch_size)], 1)


@torch.no_grad()
def sample_metrics(model: nn.Module, junction: trajectories.Junction, images: Tensor, y: Tensor,
                   open_mask: Tensor, n: int, with_kde: bool = False, batch_size: int = 100
                   ) -> dict[str, Tensor]:
    """Per-example metrics of n samples each: minADE_n, minFDE_n, exit frequencies (and KDE-NLL).

    Samples are classified by :meth:`Junction.classify`; ``closed`` is the fraction of samples
    that leave by a closed exit.
    """
    rows: dict[str, list[Tensor]] = {"ade": [], "fde": [], "freq": [], "kde_nll": []}
    for xb, yb in zip(images.split(batch_size), y.split(batch_size), strict=True):
        s = sample_in_batches(model, xb, n, batch_size)
        ade, fde = displacement_errors(s, yb)
        rows["ade"].append(ade)
        rows["fde"].append(fde)
        rows["freq"].append(mode_frequencies(junction.classify(s), junction.exits))
        if with_kde:
            rows["kde_nll"].append(kde_nll(s, yb))
    out = {name: torch.cat(values) for name, values in rows.items() if values}
    out["closed"] = (out["freq"] * ~open_mask).sum(-1)
    return out


def evaluate_forecaster(model: nn.Module, junction: trajectories.Junction, images: Tensor,
                        y: Tensor, open_mask: Tensor, eval_size: int | None = None,
                        k: int = 20, kde_samples: int = 2000) -> dict[str, float]:
    """The chapter's metrics of a forecaster on test scenes, nats per trajectory unless noted.

    On all scenes, with k samples each, beside the oracle (exact samples): ``min_ade_20``,
    ``min_fde_20`` and ``mode_coverage`` (the names keep the literature's k = 20). On the first
    ``eval_size`` scenes: ``nll`` = mean -log p(x | y), future x given image y (the CVAE's by
    importance sampling), ``bayes_floor`` = mean -log p_true(x | y), ``nll_gap`` with its
    standard error, and with ``kde_samples`` samples each: ``mode_tv`` (total variation of exit
    frequencies), ``closed_exit_rate``, ``kde_nll`` (per time step, Trajectron++) beside the
    oracle's and the exact per-step NLL ``exact_step_nll`` = mean_t -log p_true(x_t | y) that
    KDE-NLL estimates.
    """
    for name, value in (("k", k), ("kde_samples", kde_samples)):
        check_count(name, value)
    if eval_size is not None:
        check_count("eval_size", eval_size)
    oracle = forecasting.TrueForecaster(junction)
    n = len(y) if eval_size is None else min(eval_size, len(y))
    device = config.module_device(model)
    log_p = torch.cat([model.log_prob(xb.to(device), yb.to(device)).double().cpu()
                       for xb, yb in zip(images[:n].split(100), y[:n].split(100), strict=True)])
    log_true = junction.log_prob(y[:n], open_mask[:n])
    gap, gap_se = mean_and_se(log_true - log_p)
    few, few_oracle = (sample_metrics(m, junction, images, y, open_mask, k)
                       for m in (model, oracle))
    probs = junction.mode_log_probs(open_mask[:n]).exp()
    many, many_oracle = (sample_metrics(m, junction, images[:n], y[:n], open_mask[:n],
                                        kde_samples, with_kde=True) for m in (model, oracle))
    return {
        "nll": -log_p.mean().item(), "bayes_floor": -log_true.mean().item(),
        "nll_gap": gap, "nll_gap_se": gap_se,
        "min_ade_20": few["ade"].mean().item(), "min_fde_20": few["fde"].mean().item(),
        "oracle_min_ade_20": few_oracle["ade"].mean().item(),
        "oracle_min_fde_20": few_oracle["fde"].mean().item(),
        "mode_coverage": mode_coverage(few["freq"], open_mask),
        "oracle_mode_coverage": mode_coverage(few_oracle["freq"], open_mask),
        "mode_tv": mode_total_variation(many["freq"], probs).mean().item(),
        "oracle_mode_tv": mode_total_variation(many_oracle["freq"], probs).mean().item(),
        "closed_exit_rate": many["closed"].mean().item(),
        "kde_nll": many["kde_nll"].mean().item(),
        "oracle_kde_nll": many_oracle["kde_nll"].mean().item(),
        "exact_step_nll": -junction.step_log_prob(y[:n], open_mask[:n]).mean().item(),
        "test_size": len(y), "eval_size": n, "kde_samples": kde_samples,
    }
