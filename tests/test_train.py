"""Tests of vaecourse.train: the fit loop (one step or a two-player game), checkpoints, seeds,
the KL annealing hook."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaecourse import train
from vaecourse.models import vae


class Regression(nn.Module):
    """A model with the ``loss(batch) -> (loss, metrics)`` interface: least squares."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def loss(self, batch):
        x, y = batch
        loss = (self.linear(x).squeeze(-1) - y).pow(2).mean()
        return loss, {"loss": loss.item()}


def regression_loaders(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(256, generator=g)
    train_loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    return train_loader, DataLoader(TensorDataset(x[:64], y[:64]), batch_size=64)


def binary_loader(n: int = 200) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(n, 784, generator=g) ** 3, generator=g)
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=50, shuffle=True)


def test_fit_reduces_the_loss_and_records_history():
    torch.manual_seed(0)
    model = Regression()
    train_loader, test_loader = regression_loaders()
    history = train.fit(model, train_loader, test_loader=test_loader, epochs=15, lr=0.05,
                        progress=False)
    assert len(history["train"]) == len(history["test"]) == 15
    assert history["test"][-1]["loss"] < 0.1 * history["test"][0]["loss"]
    assert history["test"][-1]["loss"] < 0.05  # the noise variance is 0.01


def test_fit_trains_a_vae_and_accepts_a_loss_callable():
    torch.manual_seed(0)
    model = vae.VAE(latent=2, hidden=32)
    history = train.fit(model, binary_loader(), epochs=5, progress=False, seed=0)
    assert history["train"][-1]["elbo"] > history["train"][0]["elbo"] + 10

    def iwae(model, batch):
        return vae.iwae_loss(model, batch[0], k=3)

    history = train.fit(model, binary_loader(), epochs=1, loss_fn=iwae, progress=False)
    assert "iwae_bound" in history["train"][0]


def test_same_seed_same_result_and_checkpoint_round_trip(tmp_path):
    results = []
    for disturb, seed in [(1, 7), (2, 7), (1, 8)]:
        torch.manual_seed(0)
        model = vae.VAE(latent=2, hidden=16)
        torch.manual_seed(disturb)  # only fit's seed may decide the shuffling and the noise
        history = train.fit(model, binary_loader(), epochs=2, seed=seed, progress=False,
                            checkpoint=tmp_path / f"vae{seed}.pt")
        results.append((model, history))
    (a, history_a), (b, history_b), (_, history_c) = results
    assert history_a == history_b and history_a != history_c
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    torch.manual_seed(123)
    restored = vae.VAE(latent=2, hidden=16)
    optimizer = torch.optim.Adam(restored.parameters())
    assert train.load_checkpoint(tmp_path / "vae7.pt", restored, optimizer) == history_b
    x = next(iter(binary_loader()))[0]
    assert torch.equal(restored.encode(x)[0], b.encode(x)[0])
    assert torch.equal(restored.decode(torch.ones(3, 2)), b.decode(torch.ones(3, 2)))
    assert optimizer.state_dict()["state"]  # the Adam moments came back too
    with pytest.raises(ValueError, match="does not exist"):
        train.load_checkpoint(tmp_path / "missing.pt", restored)


def test_kl_annealing_hook_sets_beta_each_epoch():
    seen = []

    class Recorder(Regression):
        beta = 0.0

        def loss(self, batch):
            seen.append(self.beta)
            return super().loss(batch)

    model = Recorder()
    train_loader, _ = regression_loaders()
    train.fit(model, train_loader, epochs=5, before_epoch=train.kl_annealing(3), progress=False)
    per_epoch = [seen[i * len(train_loader)] for i in range(5)]
    assert per_epoch == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="warmup_epochs"):
        train.kl_annealing(0)


def test_fit_rejects_bad_arguments():
    train_loader, _ = regression_loaders()
    with pytest.raises(ValueError, match="epochs"):
        train.fit(Regression(), train_loader, epochs=0)
    empty = DataLoader(TensorDataset(torch.zeros(0, 3), torch.zeros(0)), batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        train.fit(Regression(), empty, epochs=1, progress=False)


class MeanGame(nn.Module):
    """A two-player game with a known equilibrium: a generator's mean ``a`` against a critic ``w``.

    The critic maximizes ``w (m - a) - w^2 / 2`` (m: the batch mean of the data), so its best
    answer is ``w = m - a``; the generator minimizes ``w (m - a)``, which moves ``a`` towards m.
    The equilibrium is a = E[x], w = 0.
    """

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.w = nn.Parameter(torch.zeros(()))

    def critic_loss(self, batch):
        gap = batch[0].mean() - self.a.detach()
        loss = -(self.w * gap - self.w.pow(2) / 2)
        return loss, {"loss": loss.item(), "w": self.w.item()}

    def generator_loss(self, batch):
        loss = self.w.detach() * (batch[0].mean() - self.a)
        return loss, {"loss": loss.item(), "a": self.a.item()}


def test_fit_alternates_the_steps_of_a_two_player_game():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + torch.randn(512, generator=g)
    loader = DataLoader(TensorDataset(x), batch_size=64, shuffle=True, generator=g)
    game = MeanGame()
    steps = [train.Step(torch.optim.SGD([game.w], lr=0.2), MeanGame.critic_loss, "critic"),
             train.Step(torch.optim.SGD([game.a], lr=0.2), MeanGame.generator_loss, "generator")]
    history = train.fit(game, loader, test_loader=loader, epochs=20, steps=steps,
                        progress=False)
    assert set(history["train"][-1]) == {"critic_loss", "critic_w", "generator_loss",
                                         "generator_a"}
    assert len(history["test"]) == 20
    # The generator reached the data mean, and the critic's best answer there is 0.
    assert game.a.item() == pytest.approx(x.mean().item(), abs=0.1)
    assert abs(game.w.item()) < 0.1
    assert history["train"][0]["generator_a"] < 1.5  # it started far from the mean


def test_steps_need_distinct_names_and_exclude_an_optimizer():
    game = MeanGame()
    loader = DataLoader(TensorDataset(torch.zeros(4)), batch_size=2)
    unnamed = [train.Step(torch.optim.SGD([game.w], lr=0.1), MeanGame.critic_loss),
               train.Step(torch.optim.SGD([game.a], lr=0.1), MeanGame.generator_loss)]
    with pytest.raises(ValueError, match="distinct, non-empty names"):
        train.fit(game, loader, epochs=1, steps=unnamed, progress=False)
    with pytest.raises(ValueError, match="steps or optimizer"):
        train.fit(game, loader, epochs=1, steps=unnamed[:1],
                  optimizer=torch.optim.SGD(game.parameters(), lr=0.1), progress=False)
    with pytest.raises(ValueError, match="non-empty list of train.Step"):
        train.fit(game, loader, epochs=1, steps=[], progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_and_evaluate_on_cuda():
    from vaecourse import metrics

    torch.manual_seed(0)
    model = vae.VAE(latent=2, hidden=32)
    history = train.fit(model, binary_loader(), epochs=3, device=torch.device("cuda"),
                        progress=False)
    assert next(model.parameters()).is_cuda
    assert history["train"][-1]["elbo"] > history["train"][0]["elbo"]
    x = next(iter(binary_loader()))[0]
    out = metrics.evaluate_vae(model, x, samples=500)
    assert out["likelihood_gap"] > 0


def test_late_fall_of_a_loss_curve():
    assert train.late_fall([10.0, 8.0, 6.0, 4.0]) == pytest.approx(2.0)  # quarters of one epoch
    # 8 epochs: third quarter (epochs 5, 6) mean 3.5, last quarter (7, 8) mean 3.0
    assert train.late_fall([9, 7, 5, 4, 3.6, 3.4, 3.1, 2.9]) == pytest.approx(0.5)
    assert train.late_fall([5.0] * 12) == 0.0  # flat
    with pytest.raises(ValueError, match="at least 4 epochs"):
        train.late_fall([3.0, 2.0, 1.0])


def test_evaluating_a_test_loader_leaves_training_unchanged():
    """The test epochs draw their own z ~ q (a VAE's loss samples): training must not see it."""
    weights = []
    for test_loader in (None, binary_loader()):
        torch.manual_seed(0)
        model = vae.VAE(latent=2, hidden=16)
        train.fit(model, binary_loader(), epochs=2, test_loader=test_loader, progress=False,
                  seed=3)
        weights.append(torch.cat([w.detach().flatten() for w in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_keep_best_ends_with_the_weights_of_the_lowest_validation_loss():
    """Early stopping: training data y = x drives the weight from 0 to 1 while the validation
    loss, with y = x / 2, is lowest half way, so the last epoch is not the best one."""
    torch.manual_seed(0)
    x = torch.randn(256, 1)
    train_loader = DataLoader(TensorDataset(x, x.squeeze(-1)), batch_size=256)
    validation = DataLoader(TensorDataset(x, x.squeeze(-1) / 2), batch_size=256)

    def model():
        net = Regression()
        net.linear = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(net.linear.weight)
        return net

    histories, weights = [], []
    for keep_best in (False, True):
        net = model()
        histories.append(train.fit(net, train_loader, epochs=40, test_loader=validation,
                                   optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
                                   keep_best=keep_best, progress=False))
        weights.append(net.linear.weight.item())
    losses = [epoch["loss"] for epoch in histories[1]["test"]]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert 0 < best < len(losses) - 1, losses  # the test's premise: the best epoch is inside
    assert histories[0] == histories[1]  # the same training either way
    assert weights[0] > 0.8 and abs(weights[1] - 0.5) < 0.05, weights
    assert train.run_epoch(net, validation, [train.Step(None, train.model_loss)], torch.device(
        "cpu"), train=False)["loss"] == pytest.approx(losses[best], rel=1e-6)
    with pytest.raises(ValueError, match="keep_best needs a test_loader"):
        train.fit(model(), train_loader, epochs=1, keep_best=True, progress=False)
