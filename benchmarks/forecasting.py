"""Benchmark of chapter 10: regressor vs CVAE forecasting futures at a junction, one preset.

Trains both models with the recipe of ``python -m vaecourse train forecasting``
(:func:`vaecourse.recipes.forecasting`) once per seed and prints a markdown table: machine,
preset, device, wall time, then per model the mean ± standard error over the seeds of the
training time, NLL and its gap to the Bayes floor, minADE_20 / minFDE_20 beside the oracle, mode
coverage and total variation, KDE-NLL beside the exact per-step NLL; and in how many seeds the
cpu-preset targets hold. With one seed the gap's ± is its standard error over test scenes.

    python benchmarks/forecasting.py --preset cpu --seeds 3
"""

from __future__ import annotations

import math
import statistics
import time

from common import markdown_table, options

from vaecourse import config, recipes

TARGETS = "CVAE gap <= 2, regressor gap >= 10, coverage >= 0.95, TV <= 0.1, minADE <= 1.3 oracle"
METRICS = ("train_seconds", "nll", "bayes_floor", "nll_gap", "min_ade_20", "oracle_min_ade_20",
           "min_fde_20", "oracle_min_fde_20", "mode_coverage", "mode_tv", "kde_nll",
           "oracle_kde_nll", "exact_step_nll")


def run(model: str, preset: config.Preset, seed: int) -> dict:
    """Train and evaluate one forecaster exactly as ``python -m vaecourse train forecasting``."""
    return recipes.forecasting(preset, model=model, seed=seed).summary()


def targets_met(reg: dict, cvae: dict) -> bool:
    """The targets of chapter 10 (cpu preset) for one seed's regressor and CVAE."""
    return (cvae["nll_gap"] <= 2 and reg["nll_gap"] >= 10 and cvae["mode_coverage"] >= 0.95
            and cvae["mode_tv"] <= 0.1 and cvae["min_ade_20"] <= 1.3 * cvae["oracle_min_ade_20"])


def aggregate(runs: list[dict]) -> dict[str, tuple[float, float]]:
    """Each metric of one model's runs (one per seed) as (mean, standard error over the seeds).

    With a single run the standard error is 0, except for the gap, whose error over test scenes
    (``nll_gap_se``) is then reported."""
    if not runs:
        raise ValueError("aggregate needs at least one run")
    n = len(runs)
    out = {}
    for key in METRICS:
        values = [float(r[key]) for r in runs]
        se = statistics.stdev(values) / math.sqrt(n) if n > 1 else 0.0
        out[key] = (statistics.fmean(values), se)
    if n == 1:
        out["nll_gap"] = (out["nll_gap"][0], float(runs[0]["nll_gap_se"]))
    return out


def table(rows: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The markdown table (NLL in nats per trajectory, KDE-NLL in nats per time step); every
    cell is mean ± standard error over the seeds, oracle and exact values in parentheses."""
    def cell(m: dict, key: str, digits: int) -> str:
        mean, se = m[key]
        return f"{mean:.{digits}f} ± {se:.{digits}f}"

    header = ["model", "train s", "NLL", "floor", "gap", "minADE_20 (oracle)",
              "minFDE_20 (oracle)", "coverage", "TV", "KDE-NLL (oracle, exact)"]
    lines = [[name, cell(m, "train_seconds", 0), cell(m, "nll", 2), cell(m, "bayes_floor", 2),
              cell(m, "nll_gap", 2),
              f"{cell(m, 'min_ade_20', 3)} ({m['oracle_min_ade_20'][0]:.3f})",
              f"{cell(m, 'min_fde_20', 3)} ({m['oracle_min_fde_20'][0]:.3f})",
              cell(m, "mode_coverage", 3), cell(m, "mode_tv", 3),
              f"{cell(m, 'kde_nll', 2)} ({m['oracle_kde_nll'][0]:.2f}, "
              f"{m['exact_step_nll'][0]:.2f})"]
             for name, m in rows.items()]
    return markdown_table(header, lines)


def main() -> None:
    args = options(__doc__.splitlines()[0])
    preset = config.preset(args.preset)
    seeds = range(args.seed, args.seed + args.seeds)
    start = time.perf_counter()
    runs = {seed: {model: run(model, preset, seed) for model in recipes.FORECASTERS}
            for seed in seeds}
    wall = time.perf_counter() - start
    cvae = runs[args.seed]["cvae"]
    print(f"machine: {config.machine()}; preset: {args.preset}; device: {cvae['device']}; "
          f"seeds: {list(seeds)}; wall time: {wall:.0f} s; test scenes {cvae['test_size']}, "
          f"NLL and KDE on {cvae['eval_size']} ({cvae['eval_samples']} importance samples, "
          f"{cvae['kde_samples']} KDE samples)\n")
    print(table({model: aggregate([runs[s][model] for s in seeds])
                 for model in recipes.FORECASTERS}))
    met = sum(targets_met(r["regressor"], r["cvae"]) for r in runs.values())
    print(f"\ncpu-preset targets ({TARGETS}): met in {met} of {len(runs)} seeds")


if __name__ == "__main__":
    main()
