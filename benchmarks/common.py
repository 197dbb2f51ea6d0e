"""What every benchmark script shares: its command line (--preset, --seed, --seeds), the mean
and standard error of each figure over the seeds, and its table."""

import argparse

from tabulate import tabulate

from vaecourse import config, metrics


def parser(description: str) -> argparse.ArgumentParser:
    """``--preset`` (default: the active preset), ``--seed`` (default 0) and ``--seeds`` (how
    many seeds from ``--seed`` on, default 1); a script may add its own options."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--preset", choices=sorted(config.PRESETS), default=config.preset_name())
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--seeds", type=int, default=1,
                     help="number of seeds, from --seed on (default 1)")
    return cli


def options(description: str) -> argparse.Namespace:
    """Parse the options of :func:`parser`; ``--seeds`` must be at least 1."""
    cli = parser(description)
    args = cli.parse_args()
    if args.seeds < 1:
        cli.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


def seeds(args: argparse.Namespace) -> range:
    """The seeds of a benchmark run: ``--seeds`` of them from ``--seed`` on."""
    return range(args.seed, args.seed + args.seeds)


def over_seeds(runs: list[dict], keys: tuple[str, ...]) -> dict[str, tuple[float, float] | None]:
    """Each figure ``keys`` of one configuration's runs (one JSON summary per seed) as (mean,
    standard error over the seeds); None where a figure does not apply (it is None in the runs);
    the standard error is NaN with one seed."""
    if not runs:
        raise ValueError("over_seeds needs at least one run")
    return {k: None if runs[0][k] is None else metrics.over_seeds([r[k] for r in runs])
            for k in keys}


def cell(value: tuple[float, float] | None, digits: int = 2) -> str:
    """A table cell ``mean ± s.e.`` (just the mean with one seed; empty for None)."""
    return "" if value is None else metrics.pm(*value, digits)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown (GitHub) table of the header and one line per row of already formatted cells."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
