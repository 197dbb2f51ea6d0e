"""The gpu preset's model sizes (64x64 images, wider networks, the conv VAE) run one small batch
on any device, so that a reader with a GPU does not meet a shape error after minutes of setup.
The gpu-preset figures themselves come from benchmarks/, on a GPU."""

import dataclasses

import pytest
import torch

from vaecourse import config, recipes
from vaecourse.data import colorization as color_data
from vaecourse.data.trajectories import Junction, make_dataset
from vaecourse.models import forecasting, vae

GPU = config.PRESETS["gpu"]


@pytest.mark.parametrize("kind", recipes.COLORIZERS)
def test_colorizers_at_gpu_sizes(kind):
    few = dataclasses.replace(GPU, color_images=8, color_epochs=1)  # gpu widths, 8 images
    run = recipes.colorization(few, model=kind, evaluate=False, progress=False)
    images = color_data.synthetic(2, GPU.image_size, seed=5)
    out = run.model.colorize(images.L.to(config.module_device(run.model)), 3)
    assert out.shape == (2, 3, 2, GPU.image_size, GPU.image_size) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["regressor", "cvae"])
def test_forecasters_at_gpu_sizes(kind):
    junction = Junction()
    images, y, *_ = make_dataset(junction, 4, GPU.image_size, torch.Generator().manual_seed(0)
                                 ).tensors
    model = (forecasting.Regressor(junction.steps, GPU.hidden) if kind == "regressor"
             else forecasting.CVAE(junction.steps, GPU.hidden, 4, eval_samples=8))
    loss, _ = model.loss((images, y))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.sample(images, 3).shape == (3, 4, junction.steps, 2)


def test_conv_vae_at_gpu_sizes():
    model = {"conv": vae.ConvVAE, "mlp": vae.VAE}[GPU.vae_arch](latent=20, hidden=GPU.hidden)
    x = torch.bernoulli(torch.full((4, 784), 0.3), generator=torch.Generator().manual_seed(0))
    loss, _ = model.loss((x, torch.zeros(4)))
    loss.backward()
    assert torch.isfinite(loss) and vae.log_weights(model, x, 5).shape == (4, 5)
