"""Benchmark of chapter 10: regressor vs CVAE forecasting futures at a junction, one preset.

Trains both models with the recipe of ``python -m vaecourse train forecasting``
(:func:`vaecourse.recipes.forecasting`) and prints a markdown table: machine, preset, wall
time, NLL and its gap to the Bayes floor, minADE_20 / minFDE_20 beside the oracle, mode coverage
and total variation, KDE-NLL beside the exact per-step NLL, and whether the cpu-preset targets hold.

    python benchmarks/forecasting.py --preset cpu
"""

from __future__ import annotations

import time

from common import markdown_table, options

from vaecourse import config, recipes

TARGETS = "CVAE gap <= 2, regressor gap >= 10, coverage >= 0.95, TV <= 0.1, minADE <= 1.3 oracle"


def run(model: str, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one forecaster exactly as ``python -m vaecourse train forecasting``."""
    return recipes.forecasting(preset, model=model, seed=seed).summary()


def targets_met(reg: dict, cvae: dict) -> bool:
    """The targets of chapter 10 (cpu preset)."""
    return (cvae["nll_gap"] <= 2 and reg["nll_gap"] >= 10 and cvae["mode_coverage"] >= 0.95
            and cvae["mode_tv"] <= 0.1 and cvae["min_ade_20"] <= 1.3 * cvae["oracle_min_ade_20"])


def table(rows: list[dict]) -> str:
    """The markdown table (NLL in nats per trajectory, KDE-NLL in nats per time step)."""
    header = ["model", "train s", "NLL", "floor", "gap", "minADE_20 (oracle)",
              "minFDE_20 (oracle)", "coverage", "TV", "KDE-NLL (oracle, exact)"]
    lines = [[r["model"], f"{r['train_seconds']:.0f}", f"{r['nll']:.2f}", f"{r['bayes_floor']:.2f}",
              f"{r['nll_gap']:.2f} ± {r['nll_gap_se']:.2f}",
              f"{r['min_ade_20']:.3f} ({r['oracle_min_ade_20']:.3f})",
              f"{r['min_fde_20']:.3f} ({r['oracle_min_fde_20']:.3f})",
              f"{r['mode_coverage']:.3f}", f"{r['mode_tv']:.3f}",
              f"{r['kde_nll']:.2f} ({r['oracle_kde_nll']:.2f}, {r['exact_step_nll']:.2f})"]
             for r in rows]
    return markdown_table(header, lines)


def main() -> None:
    args = options(__doc__.splitlines()[0])
    start = time.perf_counter()
    reg, cvae = (run(model, config.preset(args.preset), args.seed)
                 for model in recipes.FORECASTERS)
    wall = time.perf_counter() - start
    print(f"machine: {config.machine()}; preset: {args.preset}; device: {cvae['device']}; "
          f"wall time: {wall:.0f} s; test scenes {cvae['test_size']}, NLL and KDE on "
          f"{cvae['eval_size']} ({cvae['eval_samples']} importance samples, "
          f"{cvae['kde_samples']} KDE samples)\n")
    print(table([reg, cvae]))
    print(f"\ncpu-preset targets ({TARGETS}): {'met' if targets_met(reg, cvae) else 'NOT met'}")


if __name__ == "__main__":
    main()
