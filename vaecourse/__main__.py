"""Command line: ``python -m vaecourse train JOB --preset P ...`` (chapters 1 and 6 onwards).

Each ``train`` job is a recipe of :mod:`vaecourse.recipes`; its options, their choices and
their defaults come from the recipe (its signature and the package's lists). Progress goes to
stderr; the last line on stdout is one JSON object, :meth:`vaecourse.recipes.Run.summary`: what
ran (job, preset, device, seed, epochs, data, options), the training time and the metrics (nats
per example).

``python -m vaecourse grade ASSIGNMENT SUBMISSIONS_DIR [--out DIR] [--jobs N] [--timeout S] ...``
autogrades one folder per student, sandboxed (:mod:`vaecourse.grading`), and prints the grades
table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from vaecourse import config, recipes
from vaecourse.data import colorization as color_data
from vaecourse.data import mnist
from vaecourse.data.download import DownloadError
from vaecourse.models import colorization as color_models
from vaecourse.models import cvae as cvae_models
from vaecourse.models import vae as vae_models


def number(kind: type, minimum: float, expected: str) -> Callable[[str], float]:
    """An argparse type: ``kind(text)``, at least ``minimum``, else an error saying ``expected``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


count = number(int, 1, "an int >= 1")  # --epochs 0 is an error, not the default
non_negative = number(float, 0.0, "a number >= 0")
seed_value = number(int, 0, "an int >= 0")


# The options of each job: (recipe parameter, argparse keywords). Defaults are the recipe's.
OPTIONS: dict[str, list[tuple[str, dict]]] = {
    "autoencoder": [
        ("code", {"type": count, "help": "code size"}),
        ("noise", {"type": non_negative, "help": "masking-noise probability (denoising)"}),
        ("sparsity", {"type": non_negative, "help": "weight of the L1 penalty on the code"}),
        ("contraction", {"type": non_negative, "help": "weight of the contractive penalty"}),
    ],
    "vae": [
        ("latent", {"type": count, "help": "latent dimension"}),
        ("objective", {"choices": vae_models.OBJECTIVES, "help": "training objective"}),
        ("k", {"type": count, "help": "importance samples of the IWAE objective"}),
        ("beta", {"type": non_negative, "help": "KL weight"}),
        ("free_bits", {"type": non_negative, "help": "free nats per latent"}),
        ("anneal_epochs", {"type": count, "help": "epochs of linear KL annealing"}),
        ("arch", {"choices": recipes.VAE_ARCHS, "help": "networks (None: the preset's)"}),
        ("data", {"choices": mnist.SOURCES, "help": "MNIST source (None: the preset's)"}),
    ],
    "classifier": [],
    "cvae": [
        ("model", {"choices": recipes.CVAE_MODELS, "help": "conditional VAE or deterministic"}),
        ("given", {"type": int, "choices": tuple(cvae_models.QUADRANTS),
                   "help": "quadrants shown (None: condition on the label)"}),
        ("latent", {"type": count, "help": "latent dimension"}),
    ],
    "colorization": [
        ("model", {"choices": recipes.COLORIZERS, "help": "colorizer"}),
        ("data", {"choices": color_data.SOURCES,
                  "help": "synthetic hues, embedded photo patches, or LFW faces (downloaded "
                          "once, then cached)"}),
        ("terms", {"nargs": "+", "choices": color_models.DECODER_TERMS,
                   "help": "decoder-loss terms of the mdn's VAE"}),
        ("latent", {"type": count, "help": "latent dimension"}),
        ("samples", {"type": count, "help": "colourings per test image"}),
    ],
    "forecasting": [
        ("model", {"choices": recipes.FORECASTERS, "help": "forecaster"}),
        ("latent", {"type": count, "help": "CVAE latent dimension"}),
    ],
    # chapters 11-13
    "gan": [
        ("latent", {"type": count, "help": "dimension of the generator's z"}),
    ],
    "vaegan": [
        ("similarity", {"choices": recipes.VAEGAN_SIMILARITIES,
                        "help": "discriminator trained with the VAE (VAE/GAN) or a GAN's, "
                                "trained first and frozen (VAE_Dis)"}),
        ("latent", {"type": count, "help": "latent dimension"}),
        ("gamma", {"type": non_negative, "help": "weight of the feature likelihood in the "
                                                 "decoder's loss"}),
        ("layer", {"type": int, "choices": (1, 2), "help": "discriminator block of the "
                                                            "features"}),
    ],
    "aae": [
        ("prior", {"choices": recipes.AAE_PRIORS, "help": "prior of the 2-D codes"}),
        ("supervised", {"action": argparse.BooleanOptionalAction,
                        "help": "feed the label to the decoder"}),
    ],
    # chapters 14-16
    "betavae": [
        ("beta", {"type": non_negative, "help": "KL weight (1: the plain VAE)"}),
        ("latent", {"type": count, "help": "latent dimension"}),
    ],
    "attrcvae": [
        ("latent", {"type": count, "help": "latent dimension"}),
        ("samples", {"type": count, "help": "images generated to measure the attribute error"}),
    ],
    "flowedit": [
        ("attribute", {"choices": recipes.EDITS, "help": "the attribute edited"}),
        ("latent", {"type": count, "help": "latent dimension of the CVAE of the latent edit"}),
    ],
    "m2": [
        ("labels", {"type": count, "help": "labelled training digits, as many per class"}),
        ("alpha", {"type": non_negative, "help": "weight of the classification term"}),
        ("latent", {"type": count, "help": "latent dimension"}),
    ],
}


def common_options() -> argparse.ArgumentParser:
    """The options every ``train JOB`` shares: ``--preset``, ``--epochs``, ``--seed``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", choices=sorted(config.PRESETS), default=None,
                        help=f"cost preset (default: ${config.ENV_VAR}, else gpu with CUDA, "
                             "else cpu)")
    common.add_argument("--epochs", type=count, default=argparse.SUPPRESS,
                        help="training epochs, >= 1 (default: the preset's)")
    common.add_argument("--seed", type=seed_value, default=argparse.SUPPRESS,
                        help="seed of every generator (default 0)")
    return common


def add_job(jobs: argparse._SubParsersAction, common: argparse.ArgumentParser, job: str) -> None:
    """The subcommand ``train JOB``: the recipe's options, each defaulting to the recipe's."""
    recipe = recipes.RECIPES[job]
    p = jobs.add_parser(job, parents=[common], help=inspect.getdoc(recipe).splitlines()[0])
    defaults = inspect.signature(recipe).parameters
    for name, options in OPTIONS[job]:
        default = defaults[name].default
        shown = " ".join(default) if isinstance(default, tuple) else default
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                       **{**options, "help": f"{options['help']} (default: {shown})"})
    p.set_defaults(run=run_job)


def run_job(args: argparse.Namespace) -> dict[str, object]:
    """Run the recipe of ``args.job`` with the options given; return its summary."""
    options = {k: v for k, v in vars(args).items() if k not in ("command", "job", "run", "preset")}
    if "terms" in options:
        options["terms"] = tuple(options["terms"])
    return recipes.RECIPES[args.job](config.preset(args.preset), **options).summary()


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
    out = args.out or Path("grading") / args.assignment
    try:
        results = grading.grade(args.assignment, args.submissions, args.out, limits,
                                args.deadline, jobs=args.jobs, sandboxed=not args.unsandboxed)
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGHUP: every worker is stopped
        raise SystemExit(f"grading {err or 'interrupted'}: the rows graded so far are in "
                         f"{out / 'grades.csv'}; the same command resumes") from None
    print(f"grades in {out / 'grades.csv'}, feedback in {out / 'feedback'}", file=sys.stderr)
    return grading.table(results)


def parser() -> argparse.ArgumentParser:
    """The ``python -m vaecourse`` parser: ``train JOB [options]`` and ``grade``."""
    top = argparse.ArgumentParser(prog="python -m vaecourse", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and print its metrics as JSON")
    jobs = train.add_subparsers(dest="job", required=True, metavar="JOB")
    common = common_options()
    for job in recipes.RECIPES:
        add_job(jobs, common, job)
    add_grade(commands)
    return top


def run_command(argv: list[str] | None = None) -> dict[str, object] | str:
    """Parse ``argv`` and run the command in this process.

    Returns a ``train`` job's summary or the ``grade`` table.
    """
    args = parser().parse_args(argv)
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
