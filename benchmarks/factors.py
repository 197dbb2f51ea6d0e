"""Benchmark of chapters 14-16: disentanglement, attributes and flow editing, semi-supervised M2.

Runs the jobs of ``python -m vaecourse train betavae|attrcvae|flowedit|m2`` (the recipes of
:mod:`vaecourse.recipes`) once per seed under one preset and prints markdown tables of the mean
± standard error over the seeds: the plain VAE (beta 1) and the beta-VAE (``--beta``, default 4)
on the factor images (MIG, DCI, distortion, rate); the attribute CVAE (attribute error); the flow
edit against the latent edit (sharpness, identity error, attribute error, squared error to the
true edit); M2 against the classifier trained on the labels alone (test accuracy). Below the
tables, the two comparisons of the chapters as per-seed differences over the seeds, with how
many standard errors they are from 0.

    python benchmarks/factors.py --preset cpu --seeds 3
    python benchmarks/factors.py --preset cpu --seeds 3 --jobs betavae m2
"""

from __future__ import annotations

import math
import time

from common import cell, markdown_table, over_seeds, parser, seeds

from vaecourse import config, metrics, recipes

JOBS = ("betavae", "attrcvae", "flowedit", "m2")
VAE_FIGURES = ("train_seconds", "mig", "dci_disentanglement", "dci_completeness", "distortion",
               "rate", "active_units")
EDIT_FIGURES = ("sharpness", "identity_error", "attribute_error", "target_error")


def run(job: str, preset: config.Preset, seed: int, **options: object) -> dict:
    """One job's JSON summary, exactly as ``python -m vaecourse train JOB`` prints it."""
    return recipes.RECIPES[job](preset, seed=seed, progress=False, **options).summary()


def difference(a: list[float], b: list[float]) -> str:
    """a minus b, paired by seed: mean ± s.e. over the seeds, and the mean in standard errors
    (with one seed there is no s.e.)."""
    mean, se = metrics.over_seeds([x - y for x, y in zip(a, b, strict=True)])
    ratio = "" if math.isnan(se) or se == 0 else f" ({mean / se:.1f} s.e.)"
    return f"{metrics.pm(mean, se, 3)}{ratio}"


def column(rows: list[dict], key: str) -> list[float]:
    """One figure of every seed's run."""
    return [r[key] for r in rows]


def vae_table(runs: dict[str, list[dict]]) -> str:
    """Chapter 14: the VAE and the beta-VAE on the factor images."""
    header = ["model", "beta", "epochs", "train s", "MIG", "DCI disentanglement",
              "DCI completeness", "distortion (nats)", "rate (nats)", "active units"]
    lines = []
    for name, rows in runs.items():
        m = over_seeds(rows, VAE_FIGURES)
        lines.append([name, f"{rows[0]['beta']:g}", str(rows[0]["epochs"]),
                      cell(m["train_seconds"], 0), cell(m["mig"], 3),
                      cell(m["dci_disentanglement"], 3), cell(m["dci_completeness"], 3),
                      cell(m["distortion"], 1), cell(m["rate"], 1), cell(m["active_units"], 1)])
    return markdown_table(header, lines)


def attribute_table(rows: list[dict]) -> str:
    """Chapter 15: the attribute error of the CVAE's generated images (and of the reader)."""
    keys = ("train_seconds", "attribute_error",
            *(f"{name}_error" for name in recipes.ATTRIBUTES), "classifier_error")
    m = over_seeds(rows, keys)
    header = ["epochs", "train s", "attribute error",
              *(f"{name} error" for name in recipes.ATTRIBUTES), "reader error (real images)"]
    return markdown_table(header, [[str(rows[0]["epochs"]), cell(m["train_seconds"], 0),
                                    *(cell(m[k], 3) for k in keys[1:])]])


def edit_table(rows: list[dict]) -> str:
    """Chapter 15: the flow edit against the latent edit, and the true images' sharpness."""
    header = ["edit", "attribute", "sharpness", "identity error", "attribute error",
              "squared error to the true edit"]
    lines = []
    for method in ("flow", "latent"):
        m = over_seeds(rows, tuple(f"{method}_{k}" for k in EDIT_FIGURES))
        lines.append([method, rows[0]["attribute"],
                      *(cell(m[f"{method}_{k}"], 4 if k == "sharpness" else 3)
                        for k in EDIT_FIGURES)])
    real = over_seeds(rows, ("real_sharpness",))["real_sharpness"]
    lines.append(["true images", rows[0]["attribute"], cell(real, 4), "", "", ""])
    return markdown_table(header, lines)


def m2_table(rows: list[dict]) -> str:
    """Chapter 16: M2 and the labels-only classifier."""
    m = over_seeds(rows, ("train_seconds", "test_accuracy", "baseline_accuracy"))
    header = ["labels", "epochs", "train s", "M2 test accuracy", "labels-only test accuracy"]
    return markdown_table(header, [[str(rows[0]["labels"]), str(rows[0]["epochs"]),
                                    cell(m["train_seconds"], 0), cell(m["test_accuracy"], 3),
                                    cell(m["baseline_accuracy"], 3)]])


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS),
                     help="the jobs to run (default: all)")
    cli.add_argument("--beta", type=float, default=4.0, help="the beta-VAE's KL weight")
    args = cli.parse_args()
    if args.seeds < 1:
        cli.error(f"--seeds must be at least 1, got {args.seeds}")
    start = time.perf_counter()
    p = config.preset(args.preset)
    out = []
    if "betavae" in args.jobs:
        runs = {name: [run("betavae", p, s, beta=beta) for s in seeds(args)]
                for name, beta in (("VAE", 1.0), ("beta-VAE", args.beta))}
        out += [vae_table(runs), "", "- beta-VAE minus VAE, MIG: "
                + difference(column(runs["beta-VAE"], "mig"), column(runs["VAE"], "mig")), ""]
    if "attrcvae" in args.jobs:
        out += [attribute_table([run("attrcvae", p, s) for s in seeds(args)]), ""]
    if "flowedit" in args.jobs:
        rows = [run("flowedit", p, s) for s in seeds(args)]
        out += [edit_table(rows), ""]
        out += [f"- flow minus latent edit, {k}: " + difference(column(rows, f"flow_{k}"),
                                                               column(rows, f"latent_{k}"))
                for k in ("sharpness", "identity_error")]
        out += [""]
    if "m2" in args.jobs:
        rows = [run("m2", p, s) for s in seeds(args)]
        out += [m2_table(rows), "", "- M2 minus labels-only, test accuracy: "
                + difference(column(rows, "test_accuracy"), column(rows, "baseline_accuracy")),
                ""]
    print(f"machine: {config.machine()}  ")
    print(f"preset: {p.name}; device {config.device()}; seeds {list(seeds(args))}; wall time "
          f"{time.perf_counter() - start:.0f} s\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
