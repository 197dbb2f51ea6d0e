"""Benchmark of chapter 9: the three colorizers on the synthetic set and on natural images.

Trains the regressor, the CVAE and Deshpande et al.'s VAE + MDN on each data set with the recipe
of ``python -m vaecourse train colorization`` (:func:`vaecourse.recipes.colorization`) and prints a
markdown table: machine, preset, wall time, best-of-k ab errors, diversity, chroma ratio and
(synthetic set) hue coverage, and whether the chapter's targets hold.

    python benchmarks/colorization.py --preset cpu
    python benchmarks/colorization.py --preset gpu --data synthetic natural lfw

``--data lfw`` adds LFW faces (downloaded on first use, checked by SHA-256, then cached).
"""

from __future__ import annotations

import time

from common import markdown_table, parser

from vaecourse import config, recipes
from vaecourse.data.colorization import SOURCES as DATASETS

MODELS = recipes.COLORIZERS


def run(model: str, dataset: str, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one colorizer exactly as the command line does."""
    return recipes.colorization(preset, model=model, data=dataset, seed=seed).summary()


def targets(rows: dict[tuple[str, str], dict]) -> list[str]:
    """The chapter's targets on the data sets that ran, each with whether it holds."""
    checks = []
    if ("regressor", "synthetic") in rows:
        syn = {m: rows[(m, "synthetic")] for m in MODELS}
        checks.append(("regressor chroma ratio <= 0.3 (synthetic)",
                       syn["regressor"]["chroma_ratio"] <= 0.3))
        for m in ("cvae", "mdn"):
            checks += [
                (f"{m} chroma ratio >= 0.8 (synthetic)", syn[m]["chroma_ratio"] >= 0.8),
                (f"{m} best-of-10 error <= half the regressor's (synthetic)",
                 syn[m]["best_of_10_error"] <= 0.5 * syn["regressor"]["best_of_10_error"]),
                (f"{m} hue coverage of 10 samples >= 3.5 (synthetic)",
                 syn[m]["hue_coverage"] >= 3.5),
            ]
    for dataset in ("natural", "lfw"):
        if ("regressor", dataset) in rows:
            regressor = rows[("regressor", dataset)]
            checks += [(f"{m} best-of-5 error below the regressor's, diversity > 0 ({dataset})",
                        rows[(m, dataset)]["best_of_5_error"] < regressor["best_of_5_error"]
                        and rows[(m, dataset)]["diversity"] > 0) for m in ("cvae", "mdn")]
    return [f"- [{'x' if ok else ' '}] {name}" for name, ok in checks]


def table(rows: dict[tuple[str, str], dict]) -> str:
    """The markdown table (ab errors in Lab units, 10 colourings per test image)."""
    header = ["data", "model", "train images", "train s", "best of 1", "best of 5", "best of 10",
              "diversity", "chroma ratio", "hue coverage"]
    lines = []
    for (model, dataset), r in rows.items():
        coverage = "" if r["hue_coverage"] is None else f"{r['hue_coverage']:.2f}"
        lines.append([dataset, model, str(r["train_images"]), f"{r['train_seconds']:.0f}",
                      *(f"{r[k]:.2f}" for k in ("best_of_1_error", "best_of_5_error",
                                                "best_of_10_error", "diversity", "chroma_ratio")),
                      coverage])
    return markdown_table(header, lines)


def main() -> None:
    """Run every model on each data set asked for and print the table and the targets."""
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--data", nargs="+", choices=DATASETS, default=["synthetic", "natural"],
                     help="data sets to run (default: synthetic natural)")
    args = cli.parse_args()
    start = time.perf_counter()
    p = config.preset(args.preset)
    rows = {(m, d): run(m, d, p, args.seed) for d in args.data for m in MODELS}
    wall = time.perf_counter() - start
    print(f"machine: {config.machine()}  \npreset: {p.name} ({p.color_images} training images of "
          f"{p.image_size}x{p.image_size}, {p.color_epochs} epochs, width {p.color_width})  \n"
          f"wall time: {wall:.0f} s\n")
    print(table(rows))
    print()
    print("\n".join(targets(rows)))


if __name__ == "__main__":
    main()
