"""What every benchmark script shares: its command line (--preset, --seed) and its table."""

import argparse

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
    """A markdown table: the header, the separator line, then one line per row of cells."""
    lines = ["| " + " | ".join(cells) + " |" for cells in (header, *rows)]
    return "\n".join([lines[0], "|---" * len(header) + "|", *lines[1:]])
