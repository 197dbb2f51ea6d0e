"""Benchmark of chapter 9: the three colorizers on the synthetic set and on natural images.

Trains the regressor, the CVAE and Deshpande et al.'s VAE + MDN on each data set with the recipe
of ``python -m vaecourse train colorization`` (:func:`vaecourse.recipes.colorization`), once per
seed, and prints a markdown table: machine, preset, wall time, and per model and data set the
mean +- standard error over the seeds of the training time, best-of-k ab errors, diversity,
chroma ratio and (synthetic set) hue coverage, then whether the chapter's targets hold for the
means.

    python benchmarks/colorization.py --preset cpu --seeds 3
    python benchmarks/colorization.py --preset gpu --data synthetic natural rotated lfw

``--data lfw`` adds LFW faces (downloaded on first use, checked by SHA-256, then cached);
``rotated`` is the natural patches with their hue turned by a random multiple of 90 degrees.
"""

from __future__ import annotations

import time

from common import cell, markdown_table, over_seeds, parser

from vaecourse import config, recipes
from vaecourse.data.colorization import SOURCES as DATASETS

MODELS = recipes.COLORIZERS
FIGURES = ("train_seconds", "best_of_1_error", "best_of_5_error", "best_of_10_error",
           "diversity", "chroma_ratio", "hue_coverage")


def run(model: str, dataset: str, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one colorizer exactly as the command line does."""
    return recipes.colorization(preset, model=model, data=dataset, seed=seed).summary()


def targets(rows: dict[tuple[str, str], dict]) -> list[str]:
    """The chapter's targets (on the means over seeds) on the data sets that ran."""
    def mean(model: str, dataset: str, key: str) -> float:
        return rows[(model, dataset)][key][0]

    checks = []
    for dataset in ("synthetic", "rotated"):
        if ("regressor", dataset) in rows:
            checks.append((f"regressor chroma ratio <= 0.3 ({dataset})",
                           mean("regressor", dataset, "chroma_ratio") <= 0.3))
            checks += [(f"{m} best-of-10 error below the regressor's ({dataset})",
                        mean(m, dataset, "best_of_10_error")
                        < mean("regressor", dataset, "best_of_10_error")) for m in ("cvae", "mdn")]
    if ("regressor", "synthetic") in rows:
        for m in ("cvae", "mdn"):
            checks += [
                (f"{m} chroma ratio >= 0.8 (synthetic)",
                 mean(m, "synthetic", "chroma_ratio") >= 0.8),
                (f"{m} hue coverage of 10 samples >= 3.5 (synthetic)",
                 mean(m, "synthetic", "hue_coverage") >= 3.5),
            ]
    return [f"- [{'x' if ok else ' '}] {name}" for name, ok in checks]


def table(rows: dict[tuple[str, str], dict], seeds: int) -> str:
    """The markdown table: mean ± s.e. over the seeds (ab errors in Lab units, 10 colourings
    per test image)."""
    header = ["data", "model", "train images", "seeds", "train s", "best of 1", "best of 5",
              "best of 10", "diversity", "chroma ratio", "hue coverage"]

    lines = [[dataset, model, str(r["train_images"]), str(seeds), cell(r["train_seconds"], 0),
              *(cell(r[k], 2) for k in FIGURES[1:])] for (model, dataset), r in rows.items()]
    return markdown_table(header, lines)


def main() -> None:
    """Run every model on each data set asked for, once per seed, and print the table and the
    targets."""
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--data", nargs="+", choices=DATASETS,
                     default=["synthetic", "natural", "rotated"],
                     help="data sets to run (default: synthetic natural rotated)")
    args = cli.parse_args()
    if args.seeds < 1:
        cli.error(f"--seeds must be at least 1, got {args.seeds}")
    start = time.perf_counter()
    p = config.preset(args.preset)
    rows = {}
    for d in args.data:
        for m in MODELS:
            runs = [run(m, d, p, args.seed + s) for s in range(args.seeds)]
            rows[(m, d)] = {"train_images": runs[0]["train_images"], **over_seeds(runs, FIGURES)}
    wall = time.perf_counter() - start
    print(f"machine: {config.machine()}  \npreset: {p.name} ({p.color_images} training images of "
          f"{p.image_size}x{p.image_size}, {p.color_epochs} epochs, width {p.color_width}) on "
          f"{config.device()}, seeds {list(range(args.seed, args.seed + args.seeds))}  \n"
          f"wall time: {wall:.0f} s\n")
    print(table(rows, args.seeds))
    print()
    print("\n".join(targets(rows)))


if __name__ == "__main__":
    main()
