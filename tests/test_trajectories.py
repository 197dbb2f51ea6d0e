"""Tests of the junction scenes (chapter 10): the exact density is normalized, agrees with the
sampler and with torch.distributions, and the images show exactly the open exits."""

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaecourse.data.trajectories import Junction, make_dataset

J = Junction()
ALL_OPEN_SETS = torch.tensor([[(c >> k) & 1 for k in range(J.exits)]
                              for c in range(1, 2**J.exits)]).bool()


def full_mixture(junction, open_mask):
    """p(y | x) built from torch.distributions with full covariances (the reference)."""
    comp = junction.components()
    probs = junction.mode_log_probs(open_mask).exp()
    return MixtureSameFamily(Categorical(probs=probs),
                             MultivariateNormal(comp.loc, comp.covariance_matrix))


def test_log_prob_matches_a_torch_mixture_of_full_gaussians():
    g = torch.Generator().manual_seed(0)
    for open_mask in ALL_OPEN_SETS:
        y, _ = J.sample(open_mask, 50, g)
        ref = full_mixture(J, open_mask).log_prob(y.double().flatten(-2))
        torch.testing.assert_close(J.log_prob(y, open_mask), ref)


def test_density_integrates_to_one_by_importance_sampling():
    """E_q[p(y | x) / q(y)] = 1 for a proposal q wider than every component."""
    torch.manual_seed(1)
    comp = J.components()
    wide = MultivariateNormal(comp.loc, 2.0 * comp.covariance_matrix)
    proposal = MixtureSameFamily(Categorical(logits=torch.zeros(J.exits).double()), wide)
    for open_mask in (torch.tensor([True, False, True]), torch.tensor([True, True, True])):
        y = proposal.sample((20000,))
        w = (J.log_prob(y.unflatten(-1, (J.steps, 2)), open_mask) - proposal.log_prob(y)).exp()
        se = w.std() / math.sqrt(len(w))
        assert abs(w.mean() - 1) < 5 * se, f"integral {w.mean():.4f} +- {se:.4f}"


def test_sampled_exit_frequencies_follow_the_mode_probabilities():
    g = torch.Generator().manual_seed(2)
    open_mask = torch.tensor([True, True, True])
    _, modes = J.sample(open_mask, 4000, g)
    counts = torch.bincount(modes, minlength=J.exits).numpy()
    probs = J.mode_log_probs(open_mask).exp().numpy()
    assert stats.chisquare(counts, 4000 * probs).pvalue > 1e-3
    _, modes = J.sample(torch.tensor([False, True, False]), 100, g)
    assert (modes == 1).all()


def test_responsibilities_agree_with_sampled_exit_labels():
    """E[1{k = label} - p(k | x, y)] = 0 per exit, within 5 standard errors.

    A noisy junction makes the exits overlap, so that responsibilities are far from 0 and 1.
    """
    g = torch.Generator().manual_seed(3)
    open_mask = torch.tensor([True, True, True])
    noisy = Junction(noise_sd=1.0)
    y, modes = noisy.sample(open_mask, 4000, g)
    r = noisy.responsibilities(y, open_mask)
    assert ((r > 0.1) & (r < 0.9)).any(-1).float().mean() > 0.3  # the test has teeth
    diff = torch.nn.functional.one_hot(modes, J.exits) - r
    se = diff.std(0) / math.sqrt(len(diff))
    assert (diff.mean(0).abs() < 5 * se).all(), (diff.mean(0), se)
    y, modes = J.sample(open_mask, 1000, g)
    assert (J.classify(y) == modes).float().mean() > 0.99


def test_samples_of_each_exit_have_the_component_mean_and_covariance():
    g = torch.Generator().manual_seed(4)
    comp = J.components()
    for k in range(J.exits):
        mask = torch.zeros(J.exits, dtype=torch.bool)
        mask[k] = True
        y = J.sample(mask, 5000, g)[0].double().flatten(-2)
        se = comp.covariance_matrix[k].diagonal().sqrt() / math.sqrt(len(y))
        assert ((y.mean(0) - comp.loc[k]).abs() < 5 * se).all()
        cov_se = comp.covariance_matrix[k].diagonal() * math.sqrt(2 / len(y))
        assert ((y.var(0) - comp.covariance_matrix[k].diagonal()).abs() < 5 * cov_se).all()


def test_step_log_prob_is_the_marginal_of_each_position():
    g = torch.Generator().manual_seed(5)
    open_mask = torch.tensor([True, False, True])
    y, _ = J.sample(open_mask, 7, g)
    mix = full_mixture(J, open_mask)
    for t in (0, 5, J.steps - 1):
        sl = slice(2 * t, 2 * t + 2)
        step = MixtureSameFamily(mix.mixture_distribution, MultivariateNormal(
            mix.component_distribution.loc[:, sl],
            mix.component_distribution.covariance_matrix[:, sl, sl]))
        torch.testing.assert_close(J.step_log_prob(y, open_mask)[:, t],
                                   step.log_prob(y[:, t].double()))


def test_open_sets_are_uniform_over_nonempty_subsets():
    open_mask = J.sample_open(7000, torch.Generator().manual_seed(6))
    codes = (open_mask.long() * 2 ** torch.arange(J.exits)).sum(-1)
    assert codes.min() >= 1
    counts = torch.bincount(codes, minlength=2**J.exits)[1:].numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("size", [16, 32, 64])
def test_images_show_exactly_the_open_exits(size):
    images = J.render(ALL_OPEN_SETS, size)
    assert images.shape == (len(ALL_OPEN_SETS), 1, size, size)
    assert torch.equal(J.read_open_exits(images), ALL_OPEN_SETS)
    assert len(torch.unique(images.flatten(1), dim=0)) == len(ALL_OPEN_SETS)
    # a closed exit leaves no pixel on its side of the image; an open one does
    one = J.render(torch.tensor([False, True, False]), size)
    both = J.render(torch.tensor([True, True, False]), size)
    west = J.pixel_centres(size)[..., 0] < -0.3
    assert (one[0][west] == 0).all() and (both[0][west] > 0).any()


def test_dataset_holds_images_futures_masks_and_exits():
    images, y, open_mask, modes = make_dataset(J, 20, 16, torch.Generator().manual_seed(7)).tensors
    assert images.shape == (20, 1, 16, 16) and y.shape == (20, J.steps, 2)
    assert torch.equal(J.read_open_exits(images), open_mask)
    assert open_mask[torch.arange(20), modes].all()


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one exit"):
        J.mode_log_probs(torch.tensor([False, False, False]))
    with pytest.raises(ValueError, match="boolean"):
        J.log_prob(torch.zeros(J.steps, 2), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 12, 2\)"):
        J.log_prob(torch.zeros(5, 2), torch.tensor([True, True, True]))
    with pytest.raises(ValueError, match="size"):
        J.render(torch.tensor([True, True, True]), 4)
    with pytest.raises(ValueError, match="positive int"):
        make_dataset(J, 0, 16)
