"""What every benchmark script shares: its command line (--preset, --seed)."""

import argparse

from vaecourse import config


def options(description: str) -> argparse.Namespace:
    """Parse ``--preset`` (default: the active preset) and ``--seed`` (default 0)."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--preset", choices=sorted(config.PRESETS), default=config.preset_name())
    cli.add_argument("--seed", type=int, default=0)
    return cli.parse_args()
