"""Benchmark of chapters 6 and 7: the VAE on binarized MNIST under one preset.

Trains the configurations the chapters quote (VAE with latent size 2, 10, 20; IWAE k=5 with
latent 20 on the same data and epochs) with the recipe of ``python -m vaecourse train vae``
(:func:`vaecourse.recipes.vae`) and prints a markdown table: machine, preset, wall time,
test ELBO, the ``eval_samples``-sample log p(x) estimate, the gap and the active units.

    python benchmarks/vae_mnist.py --preset cpu
"""

from __future__ import annotations

import math
import time

from common import markdown_table, options

from vaecourse import config, recipes

CONFIGS = [
    {"latent": 2},
    {"latent": 10},
    {"latent": 20},
    {"latent": 20, "objective": "iwae", "k": 5},
]


def run(options: dict, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one configuration exactly as ``python -m vaecourse train vae`` does."""
    return recipes.vae(preset, seed=seed, **options).summary()


def table(rows: list[dict]) -> str:
    """The markdown table of the results (nats per example; ± one standard error)."""
    header = ["objective", "latent", "epochs", "train s", "test ELBO", "log p(x)", "gap", "active"]
    lines = [["VAE" if r["objective"] == "vae" else f"IWAE k={r['k']}", str(r["latent"]),
              str(r["epochs"]), f"{r['train_seconds']:.0f}", f"{r['test_elbo']:.2f}",
              f"{r['test_log_likelihood']:.2f} ± {r['test_log_likelihood_se']:.2f}",
              f"{r['likelihood_gap']:.2f} ± {r['likelihood_gap_se']:.2f}",
              f"{r['active_units']}/{r['latent']}"] for r in rows]
    return markdown_table(header, lines)


def main() -> None:
    args = options(__doc__.splitlines()[0])
    start = time.perf_counter()
    p = config.preset(args.preset)
    rows = [run(options, p, args.seed) for options in CONFIGS]
    print(f"machine: {config.machine()}  ")
    print(f"preset: {p.name} (data {rows[0]['data']}, {p.vae_epochs} epochs, hidden {p.hidden}, "
          f"log p(x) with {p.eval_samples} importance samples on {rows[0]['eval_size']} test "
          f"digits), seed {args.seed}, wall time {time.perf_counter() - start:.0f} s\n")
    print(table(rows))
    vae, iwae = rows[2], rows[3]
    diff = iwae["test_log_likelihood"] - vae["test_log_likelihood"]
    se = math.hypot(iwae["test_log_likelihood_se"], vae["test_log_likelihood_se"])
    print(f"\nIWAE k=5 minus VAE (latent 20), log p(x): {diff:+.2f} ± {se:.2f} nats "
          "(unpaired standard error, an upper bound for the paired one)")


if __name__ == "__main__":
    main()
