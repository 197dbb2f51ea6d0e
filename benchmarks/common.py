"""What every benchmark script shares: its command line (--preset, --seed) and its table."""

import argparse

from tabulate import tabulate

from vaecourse import config


def parser(description: str) -> argparse.ArgumentParser:
    """``--preset`` (default: the active preset) and ``--seed`` (default 0); a script may add
    its own options."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--preset", choices=sorted(config.PRESETS), default=config.preset_name())
    cli.add_argument("--seed", type=int, default=0)
    return cli


def options(description: str) -> argparse.Namespace:
    """Parse the options of :func:`parser`."""
    return parser(description).parse_args()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown (GitHub) table of the header and one line per row of already formatted cells."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
