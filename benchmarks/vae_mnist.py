"""Benchmark of chapters 6 and 7: the VAE on binarized MNIST under one preset, over seeds.

Trains the configurations the chapters quote (VAE with latent size 2, 10, 20; IWAE k=5, KL
annealing and free bits with latent 20, all on the same data and epochs) with the recipe of
``python -m vaecourse train vae`` (:func:`vaecourse.recipes.vae`), once per seed, and prints a
markdown table: machine, preset, device, wall time, then per configuration the mean ± standard
error over the seeds of the training time, test ELBO, the ``eval_samples``-sample bound L_K on
log p(x), its gap to the ELBO and the active units; and the IWAE's and the remedies' differences
to the plain VAE (latent 20), per seed on the same digits, over the seeds.

    python benchmarks/vae_mnist.py --preset cpu --seeds 3
"""

from __future__ import annotations

import time

from common import cell, markdown_table, options, over_seeds, seeds

from vaecourse import config, metrics, recipes

CONFIGS = {
    "VAE, latent 2": {"latent": 2},
    "VAE, latent 10": {"latent": 10},
    "VAE, latent 20": {"latent": 20},
    "IWAE k=5, latent 20": {"latent": 20, "objective": "iwae", "k": 5},
    "annealed, latent 20": {"latent": 20, "anneal_epochs": "half"},
    "free bits 0.5, latent 20": {"latent": 20, "free_bits": 0.5},
}
FIGURES = ("train_seconds", "test_elbo", "test_log_likelihood", "likelihood_gap", "active_units")


def run(options: dict, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one configuration exactly as ``python -m vaecourse train vae`` does
    (``anneal_epochs="half"``: half of the preset's epochs, as chapter 7)."""
    if options.get("anneal_epochs") == "half":
        options = {**options, "anneal_epochs": max(1, preset.vae_epochs // 2)}
    return recipes.vae(preset, seed=seed, progress=False, **options).summary()


def table(runs: dict[str, list[dict]]) -> str:
    """The markdown table (nats per digit; mean ± s.e. over the seeds)."""
    header = ["configuration", "epochs", "train s", "test ELBO", "L_K", "L_K - ELBO", "active"]
    lines = []
    for name, rows in runs.items():
        m = over_seeds(rows, FIGURES)
        lines.append([name, str(rows[0]["epochs"]), cell(m["train_seconds"], 0),
                      cell(m["test_elbo"]), cell(m["test_log_likelihood"]),
                      cell(m["likelihood_gap"]), cell(m["active_units"], 1)])
    return markdown_table(header, lines)


def differences(runs: dict[str, list[dict]], base: str = "VAE, latent 20") -> list[str]:
    """Each latent-20 configuration minus the plain VAE: L_K and active units, mean ± s.e. over
    the seeds of the per-seed differences (the same test digits in both runs of a seed)."""
    lines = []
    for name in ("IWAE k=5, latent 20", "annealed, latent 20", "free bits 0.5, latent 20"):
        pairs = list(zip(runs[name], runs[base], strict=True))
        d = {k: metrics.over_seeds([a[k] - b[k] for a, b in pairs])
             for k in ("test_log_likelihood", "active_units")}
        lines.append(f"- {name} minus {base}: L_K {cell(d['test_log_likelihood'])} nats, "
                     f"active units {cell(d['active_units'], 1)}")
    return lines


def main() -> None:
    args = options(__doc__.splitlines()[0])
    start = time.perf_counter()
    p = config.preset(args.preset)
    runs = {name: [run(c, p, seed) for seed in seeds(args)] for name, c in CONFIGS.items()}
    first = runs["VAE, latent 20"][0]
    print(f"machine: {config.machine()}  ")
    print(f"preset: {p.name} (data {first['data']}, {p.vae_epochs} epochs, hidden {p.hidden}, "
          f"L_K with K = {p.eval_samples} importance samples on {first['eval_size']} test "
          f"digits); device {first['device']}; seeds {list(seeds(args))}; wall time "
          f"{time.perf_counter() - start:.0f} s\n")
    print(table(runs))
    print()
    print("\n".join(differences(runs)))


if __name__ == "__main__":
    main()
