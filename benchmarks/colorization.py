"""Benchmark of chapter 9: the three colorizers on the synthetic set and on natural patches.

Trains the regressor, the CVAE and Deshpande et al.'s VAE + MDN on both data sets through the
command line's own code path (``python -m vaecourse train colorization``) and prints a
markdown table: machine, preset, wall time, best-of-k ab errors, diversity, chroma ratio and
(synthetic set) hue coverage, and whether the chapter's targets hold.

    python benchmarks/colorization.py --preset cpu
"""

from __future__ import annotations

import time

from common import options

from vaecourse import config
from vaecourse.__main__ import run_command

MODELS = ("regressor", "cvae", "mdn")
DATASETS = ("synthetic", "natural")


def run(model: str, dataset: str, preset: str, seed: int) -> dict:
    """Train and evaluate one colorizer exactly as the command line does."""
    return run_command(["train", "colorization", "--model", model, "--data", dataset,
                        "--preset", preset, "--seed", str(seed)])


def targets(rows: dict[tuple[str, str], dict]) -> list[str]:
    """The chapter's targets, each with whether it holds."""
    syn = {m: rows[(m, "synthetic")] for m in MODELS}
    nat = {m: rows[(m, "natural")] for m in MODELS}
    checks = [
        ("regressor chroma ratio <= 0.3 (synthetic)", syn["regressor"]["chroma_ratio"] <= 0.3),
    ]
    for m in ("cvae", "mdn"):
        checks += [
            (f"{m} chroma ratio >= 0.8 (synthetic)", syn[m]["chroma_ratio"] >= 0.8),
            (f"{m} best-of-10 error <= half the regressor's (synthetic)",
             syn[m]["best_of_10_error"] <= 0.5 * syn["regressor"]["best_of_10_error"]),
            (f"{m} hue coverage of 10 samples >= 3.5 (synthetic)", syn[m]["hue_coverage"] >= 3.5),
            (f"{m} best-of-5 error below the regressor's, diversity > 0 (natural)",
             nat[m]["best_of_5_error"] < nat["regressor"]["best_of_5_error"]
             and nat[m]["diversity"] > 0),
        ]
    return [f"- [{'x' if ok else ' '}] {name}" for name, ok in checks]


def table(rows: dict[tuple[str, str], dict]) -> str:
    """The markdown table (ab errors in Lab units, 10 colourings per test image)."""
    lines = ["| data | model | train s | best of 1 | best of 5 | best of 10 | diversity "
             "| chroma ratio | hue coverage |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, dataset), r in rows.items():
        coverage = "" if r["hue_coverage"] is None else f"{r['hue_coverage']:.2f}"
        lines.append(f"| {dataset} | {model} | {r['train_seconds']:.0f} "
                     f"| {r['best_of_1_error']:.2f} | {r['best_of_5_error']:.2f} "
                     f"| {r['best_of_10_error']:.2f} | {r['diversity']:.2f} "
                     f"| {r['chroma_ratio']:.2f} | {coverage} |")
    return "\n".join(lines)


def main() -> None:
    """Run every model on every data set and print the table and the targets."""
    args = options(__doc__.splitlines()[0])
    start = time.perf_counter()
    rows = {(m, d): run(m, d, args.preset, args.seed) for d in DATASETS for m in MODELS}
    wall = time.perf_counter() - start
    p = config.preset(args.preset)
    print(f"machine: {config.machine()}  \npreset: {p.name} ({p.color_images} training images of "
          f"{p.image_size}x{p.image_size}, {p.color_epochs} epochs, width {p.color_width})  \n"
          f"wall time: {wall:.0f} s\n")
    print(table(rows))
    print()
    print("\n".join(targets(rows)))


if __name__ == "__main__":
    main()
