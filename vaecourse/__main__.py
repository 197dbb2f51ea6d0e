"""Command line: ``python -m vaecourse train MODEL --preset P ...`` (chapter 6 onwards).

Progress goes to stderr; the last line on stdout is one JSON object of metrics (nats per
example). Each ``train`` model is a subcommand with two small functions: one that adds its
options (``add_<model>``) and one that runs it and returns the metrics (``run_<model>``).

``python -m vaecourse grade ASSIGNMENT SUBMISSIONS_DIR [--out DIR] [--jobs N] [--timeout S] ...``
autogrades one folder per student, sandboxed (:mod:`vaecourse.grading`), and prints the grades
table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from vaecourse import config
from vaecourse.data.download import DownloadError


def add_vae(models: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Options of ``train vae``."""
    p = models.add_parser("vae", parents=[common], help="the VAE of chapters 6-7 on MNIST")
    p.add_argument("--latent", type=int, default=20, help="latent dimension (default 20)")
    p.add_argument("--objective", choices=["vae", "iwae"], default="vae")
    p.add_argument("--k", type=int, default=1, help="importance samples of the IWAE objective")
    p.add_argument("--beta", type=float, default=1.0, help="KL weight (default 1)")
    p.add_argument("--free-bits", type=float, default=0.0, help="free nats per latent")
    p.add_argument("--data", choices=["embedded", "full", "auto"], default=None,
                   help="MNIST source (default: the preset's)")
    p.set_defaults(run=run_vae)


def run_vae(args: argparse.Namespace) -> dict[str, object]:
    """Train a VAE as ``args`` say and evaluate it (:func:`vaecourse.metrics.evaluate_vae`)."""
    from vaecourse import metrics, train

    if args.objective == "vae" and args.k != 1:
        raise ValueError(f"--k {args.k} needs --objective iwae (a VAE uses one sample)")
    p = config.preset()
    run = train.train_vae(args.latent, objective=args.objective, k=args.k, beta=args.beta,
                          free_bits=args.free_bits, epochs=args.epochs, seed=args.seed,
                          source=args.data)
    results = metrics.evaluate_vae(run.model, run.x_test, p.eval_samples, p.eval_size)
    return {"model": "vae", "preset": p.name, "device": str(config.device()),
            "data": run.source, "latent": args.latent, "objective": args.objective, "k": args.k,
            "beta": args.beta, "free_bits": args.free_bits,
            "epochs": len(run.history["train"]), "seed": args.seed,
            "train_seconds": round(run.train_seconds, 2), "eval_samples": p.eval_samples,
            "eval_size": min(len(run.x_test), p.eval_size or len(run.x_test)), **results}


def add_colorization(models: argparse._SubParsersAction,
                     common: argparse.ArgumentParser) -> None:
    """Options of ``train colorization``."""
    p = models.add_parser("colorization", parents=[common],
                          help="a colorizer of chapter 9 (regressor, CVAE or VAE + MDN)")
    p.add_argument("--model", choices=["regressor", "cvae", "mdn"], default="cvae")
    p.add_argument("--data", choices=["synthetic", "natural", "lfw"], default="synthetic",
                   help="synthetic hues, embedded photo patches, or LFW faces (downloaded once, "
                        "then cached)")
    p.set_defaults(run=run_colorization)


def run_colorization(args: argparse.Namespace) -> dict[str, object]:
    """Train a colorizer on the preset's data and evaluate 10 colourings per test image."""
    from vaecourse.data import colorization as color_data
    from vaecourse.models import colorization

    p = config.preset()
    epochs = args.epochs or p.color_epochs
    train_set, test_set = color_data.preset_data(args.data, args.seed)
    model, seconds = colorization.train_colorizer(args.model, train_set, epochs=epochs,
                                                  width=p.color_width, seed=args.seed,
                                                  progress=True)
    results = colorization.evaluate_colorizer(model, test_set, samples=10)
    return {"model": args.model, "preset": p.name, "device": str(config.device()),
            "dataset": args.data, "image_size": p.image_size, "train_images": len(train_set),
            "test_images": len(test_set), "epochs": epochs, "seed": args.seed,
            "train_seconds": round(seconds, 2), "hue_coverage": None, **results}


def add_forecasting(models: argparse._SubParsersAction,
                    common: argparse.ArgumentParser) -> None:
    """Options of ``train forecasting``."""
    p = models.add_parser("forecasting", parents=[common],
                          help="a forecaster of chapter 10 (regressor or CVAE) on junction scenes")
    p.add_argument("--model", choices=["regressor", "cvae"], default="cvae")
    p.add_argument("--latent", type=int, default=4, help="CVAE latent dimension (default 4)")
    p.set_defaults(run=run_forecasting)


def run_forecasting(args: argparse.Namespace) -> dict[str, object]:
    """Train a forecaster and evaluate it (:func:`vaecourse.metrics.evaluate_forecaster`)."""
    from vaecourse import metrics
    from vaecourse.models import forecasting

    p = config.preset()
    run = forecasting.train_forecaster(args.model, args.latent, args.epochs, args.seed)
    images, y, open_mask, _ = run.test.tensors
    results = metrics.evaluate_forecaster(run.model, run.junction, images, y, open_mask,
                                          p.eval_size, kde_samples=forecasting.kde_samples(),
                                          seed=args.seed)
    return {"model": args.model, "preset": p.name, "device": str(config.device()),
            "image_size": p.image_size, "train_scenes": p.forecast_size,
            "epochs": len(run.history["train"]), "seed": args.seed,
            "latent": args.latent if args.model == "cvae" else None,
            "eval_samples": p.eval_samples if args.model == "cvae" else None,
            "train_seconds": round(run.train_seconds, 2), **results}


TRAINERS: dict[str, Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = {
    "vae": add_vae,
    "colorization": add_colorization,
    "forecasting": add_forecasting,
}


def common_options() -> argparse.ArgumentParser:
    """The options every ``train MODEL`` shares: ``--preset``, ``--epochs``, ``--seed``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", choices=sorted(config.PRESETS), default=None,
                        help="cost preset (default: $VAECOURSE_PRESET, else gpu or cpu)")
    common.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    common.add_argument("--seed", type=int, default=0)
    return common


def add_grade(commands: argparse._SubParsersAction) -> None:
    """Options of ``grade`` (book/instructors.md); the limits default to :class:`Limits`'s."""
    from vaecourse.grading import Limits

    p = commands.add_parser("grade", help="autograde a folder of submissions, sandboxed")
    p.add_argument("assignment", help="problem set with a master in solutions/, e.g. ps0_warmup")
    p.add_argument("submissions", type=Path, help="one folder per student with their notebook")
    p.add_argument("--out", type=Path, default=None,
                   help="course directory where grading happens (default grading/ASSIGNMENT)")
    p.add_argument("--deadline", type=datetime.fromisoformat, default=None,
                   help="ISO date-time, e.g. 2025-03-01T23:59; later notebooks are late")
    p.add_argument("--jobs", type=int, default=None, help="students graded at once (default: "
                   "the number of CPUs)")
    p.add_argument("--unsandboxed", action="store_true", help="run student code without "
                   "bubblewrap (unsafe; every row says so)")
    limits = [("timeout", "cell_seconds", "seconds per cell"),
              ("notebook-timeout", "notebook_seconds", "seconds per notebook"),
              ("cpu", "cpu_seconds", "CPU seconds per notebook"),
              ("memory", "memory_mb", "MB of memory per process"),
              ("file-size", "file_mb", "MB per file written"),
              ("cell-output", "cell_output_kb", "kB of output kept per cell"),
              ("notebook-output", "notebook_output_kb", "kB of output kept per notebook")]
    for option, name, what in limits:
        p.add_argument(f"--{option}", dest=name, type=int, default=getattr(Limits, name),
                       help=f"{what} (default %(default)s)")
    p.set_defaults(run=run_grade)


def run_grade(args: argparse.Namespace) -> str:
    """Grade the submissions as ``args`` say; return the grades table."""
    from dataclasses import fields

    from vaecourse import grading

    limits = grading.Limits(**{f.name: getattr(args, f.name) for f in fields(grading.Limits)})
    results = grading.grade(args.assignment, args.submissions, args.out, limits, args.deadline,
                            jobs=args.jobs, sandboxed=not args.unsandboxed)
    out = args.out or Path("grading") / args.assignment
    print(f"grades in {out / 'grades.csv'}, feedback in {out / 'feedback'}", file=sys.stderr)
    return grading.table(results)


def parser() -> argparse.ArgumentParser:
    """The ``python -m vaecourse`` parser: ``train MODEL [options]`` and ``grade``."""
    top = argparse.ArgumentParser(prog="python -m vaecourse", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and print its metrics as JSON")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    common = common_options()
    for add in TRAINERS.values():
        add(models, common)
    add_grade(commands)
    return top


def run_command(argv: list[str] | None = None) -> dict[str, object] | str:
    """Parse ``argv`` and run the command in this process; ``--preset`` sets the active preset.

    Returns a ``train`` command's metrics (benchmarks/ call this) or the ``grade`` table.
    """
    args = parser().parse_args(argv)
    if getattr(args, "preset", None) is not None:
        os.environ[config.ENV_VAR] = args.preset
    return args.run(args)


def main(argv: list[str] | None = None) -> int:
    """Run the command and print its metrics as the last line of stdout (for ``grade``: the
    grades table)."""
    try:
        results = run_command(argv)
    except (ValueError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(results if isinstance(results, str) else json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
