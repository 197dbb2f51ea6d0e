"""Benchmark of chapters 11-13: the VAE, the GAN, VAE/GAN, VAE_Dis and adversarial autoencoders
side by side on the same digits, under one preset, over seeds.

Each model is trained by its recipe (``python -m vaecourse train vae|gan|vaegan|aae``) once per
seed; the VAE (the preset's networks, latent 20, chapter 6's ``vae_epochs``) is measured by
:func:`vaecourse.recipes.vae_quality`. The markdown table gives, per model, the mean ± standard
error over the seeds of the training time, the samples' sharpness (mean gradient
energy) and class total variation under the digit classifier, the reconstruction error and the
classifier's accuracy on reconstructions (encoders), the GAN's inversion error, and the AAEs'
MMD^2 of test codes to their prior next to the latent-2 VAE's; a last row gives the test digits'
sharpness and class total variation for reference.

    python benchmarks/beyond.py --preset cpu --seeds 3
"""

from __future__ import annotations

import time

from common import cell, markdown_table, options, over_seeds, seeds

from vaecourse import config, recipes

MODELS = {
    "VAE": ("vae", {}),
    "GAN": ("gan", {}),
    "VAE/GAN": ("vaegan", {"similarity": "learned"}),
    "VAE_Dis": ("vaegan", {"similarity": "pretrained"}),
    "AAE, mixture prior": ("aae", {"prior": "mixture"}),
    "AAE, swiss roll prior": ("aae", {"prior": "swiss_roll"}),
}
FIGURES = ("train_seconds", "sharpness", "class_tv", "recon_error", "recon_accuracy",
           "inversion_error", "prior_mmd", "vae_prior_mmd", "test_sharpness", "test_class_tv")


def run(job: str, options: dict, preset: config.Preset, seed: int) -> dict:
    """One model's summary as its command line prints it (the VAE's with the measures of
    :func:`vaecourse.recipes.vae_quality`, after ``vae_epochs`` epochs), every figure of
    :data:`FIGURES` present (None where it does not apply)."""
    if job == "vae":
        vae_run = recipes.vae(preset, seed=seed, evaluate=False, progress=False)
        summary = {**vae_run.summary(), **recipes.vae_quality(vae_run, preset)}
    else:
        summary = recipes.RECIPES[job](preset, seed=seed, progress=False, **options).summary()
    return {**dict.fromkeys(FIGURES), **summary}


def table(runs: dict[str, list[dict]]) -> str:
    """The markdown table (mean ± s.e. over the seeds)."""
    header = ["model", "epochs", "train s", "sharpness", "class TV", "recon error",
              "recon accuracy", "inversion error", "MMD² to prior", "VAE's MMD² to prior"]
    lines = []
    for name, rows in runs.items():
        m = over_seeds(rows, FIGURES)
        lines.append([name, str(rows[0]["epochs"]), cell(m["train_seconds"], 0),
                      cell(m["sharpness"], 4), cell(m["class_tv"], 3), cell(m["recon_error"], 1),
                      cell(m["recon_accuracy"], 3), cell(m["inversion_error"], 1),
                      cell(m["prior_mmd"], 4), cell(m["vae_prior_mmd"], 4)])
    m = over_seeds(runs["GAN"], FIGURES)
    lines.append(["test digits", "", "", cell(m["test_sharpness"], 4),
                  cell(m["test_class_tv"], 3), "", "", "", "", ""])
    return markdown_table(header, lines)


def main() -> None:
    args = options(__doc__.splitlines()[0])
    start = time.perf_counter()
    p = config.preset(args.preset)
    runs = {name: [run(job, o, p, seed) for seed in seeds(args)]
            for name, (job, o) in MODELS.items()}
    first = runs["GAN"][0]
    print(f"machine: {config.machine()}  ")
    print(f"preset: {p.name} (data {first['data']}, {first['train_digits']} training and "
          f"{first['test_digits']} test digits, {p.vae_epochs} epochs for the VAE, {p.gan_epochs} "
          f"for the GAN, {p.vaegan_epochs} for the VAE/GAN and VAE_Dis's second stage, "
          f"{p.aae_epochs} for the AAEs, width {p.gan_width}, "
          f"{p.quality_samples} samples per model, MMD bandwidths {recipes.MMD_BANDWIDTHS}); "
          f"device {first['device']}; seeds {list(seeds(args))}; wall time "
          f"{time.perf_counter() - start:.0f} s\n")
    print(table(runs))


if __name__ == "__main__":
    main()
