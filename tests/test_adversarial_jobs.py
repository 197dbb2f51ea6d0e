"""The jobs of chapters 11-13 (recipes gan, vaegan, aae and their training containers): the
command line's JSON keys, reproducibility from a seed on a CPU, the steps of each player, GAN
inversion, clear errors, and a CUDA run when a GPU is present."""

import json
import math

import pytest
import torch

from vaecourse import config, recipes, train
from vaecourse.__main__ import main
from vaecourse.models import aae, gan, vaegan

SMOKE = config.PRESETS["smoke"]
KEYS = {"gan": {"preset", "device", "seed", "train_seconds", "sharpness", "class_tv",
                "test_sharpness", "test_class_tv", "inversion_error", "inversion_seconds"},
        "vaegan": {"preset", "device", "seed", "train_seconds", "sharpness", "class_tv",
                   "recon_error", "recon_accuracy"},
        "aae": {"preset", "device", "seed", "train_seconds", "sharpness", "class_tv",
                "recon_error", "recon_accuracy", "prior_mmd", "prior_mmd_se", "vae_prior_mmd",
                "vae_prior_mmd_se"}}


@pytest.mark.parametrize("argv", [["gan"], ["vaegan", "--similarity", "pretrained"],
                                  ["aae", "--prior", "swiss_roll", "--supervised"]])
def test_each_job_prints_the_keys_of_the_issue(argv, capsys):
    job = argv[0]
    assert main(["train", *argv, "--preset", "smoke", "--seed", "2"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert KEYS[job] <= set(printed), KEYS[job] - set(printed)
    assert printed["preset"] == "smoke" and printed["seed"] == 2 and printed["device"] == "cpu"
    assert 0 <= printed["class_tv"] <= 0.9 and 0 <= printed["test_class_tv"] <= 0.9
    assert printed["sharpness"] > 0 and printed["test_sharpness"] > 0
    assert all(math.isfinite(printed[k]) for k in KEYS[job] if k not in ("preset", "device"))
    if job == "aae":
        assert printed["supervised"] is True and 0 <= printed["label_accuracy"] <= 1


def test_gan_training_on_a_cpu_is_reproducible_from_a_seed():
    runs = [recipes.gan(SMOKE, seed=seed, evaluate=False, progress=False) for seed in (4, 4, 5)]
    assert runs[0].history == runs[1].history
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert runs[0].history != runs[2].history
    losses = runs[0].history["train"][-1]
    assert {"discriminator_loss", "discriminator_d_real", "discriminator_d_fake",
            "generator_loss"} <= set(losses) and set(losses) == set(runs[0].history["test"][-1])


def one_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(8, 784, generator=gen), torch.arange(8) % 10


def changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def fit_once(model: torch.nn.Module, steps: list[train.Step]) -> None:
    train.fit(model, [one_batch()], epochs=1, steps=steps, device=torch.device("cpu"),
              progress=False)


@pytest.mark.parametrize("job, options", [("gan", {}), ("vaegan", {"similarity": "learned"}),
                                          ("vaegan", {"similarity": "pretrained"}),
                                          ("aae", {"prior": "mixture"})])
def test_before_epoch_hook_sees_every_epoch_and_measuring_leaves_training_unchanged(job, options):
    """Chapters 11-13 watch the samples during training with the fit loop's before_epoch hook
    (recipes.quality_watcher): drawing them in eval mode with their own generator, and
    reconstructing test digits, must not change what is trained."""
    curve = []
    _, test, _ = recipes.grey_digits(SMOKE, seed=3)
    net = classifier_of_smoke()
    digits = 20 if job == "vaegan" else None
    watch = recipes.quality_watcher(curve, test, net, every=1, samples=50, digits=digits)
    plain, watched = (recipes.RECIPES[job](SMOKE, seed=3, epochs=2, evaluate=False,
                                           progress=False, before_epoch=hook, **options)
                      for hook in (None, watch))
    assert [epoch for epoch, _ in curve] == [0, 1] and plain.history == watched.history
    keys = {"sharpness", "class_tv", "test_sharpness", "test_class_tv"}
    assert set(curve[0][1]) == keys | ({"recon_error", "recon_accuracy"} if digits else set())
    for a, b in zip(plain.model.state_dict().values(), watched.model.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def classifier_of_smoke() -> torch.nn.Module:
    return recipes.digit_classifier(SMOKE, 3, torch.device("cpu"))


def test_quality_watcher_measures_every_kth_epoch_from_the_same_codes():
    curve = []
    _, test, _ = recipes.grey_digits(SMOKE, seed=0)
    torch.manual_seed(0)
    model = gan.GAN(latent=4, width=4)
    watch = recipes.quality_watcher(curve, test, classifier_of_smoke(), every=3, samples=40)
    for epoch in range(7):
        watch(epoch, model)
    assert [epoch for epoch, _ in curve] == [0, 3, 6]
    assert curve[0][1] == curve[1][1] == curve[2][1]  # an unchanged model, the same codes
    expected = recipes.image_quality(recipes.draw(model.sample, 40, seed=1), test,
                                     classifier_of_smoke())
    assert curve[0][1] == expected


def test_gan_steps_train_their_own_network_only():
    torch.manual_seed(0)
    model = gan.GAN(latent=4, width=4)
    for player, other in (("discriminator", "generator"), ("generator", "discriminator")):
        step_fn = getattr(gan.GAN, f"{player}_step")
        before = {n: {k: v.clone() for k, v in getattr(model, n).state_dict().items()}
                  for n in (player, other)}
        fit_once(model, [recipes.adam(getattr(model, player).parameters(), step_fn, player)])
        assert changed(before[player], getattr(model, player))
        now = getattr(model, other).state_dict()
        weights = [k for k in now if "running" not in k and "num_batches" not in k]
        assert all(torch.equal(now[k], before[other][k]) for k in weights)  # BN statistics move


def test_vaegan_discriminator_step_is_the_discriminator_loss_of_vaegan_losses():
    """Same noise (the global generator, seeded alike): the same value and the same gradient
    for the discriminator as vaegan_losses' L_GAN, without gradients for encoder and decoder."""
    model = vaegan.VAEGAN(latent=4, width=4, gamma=0.5).double()
    x = one_batch()[0].double()
    torch.manual_seed(3)
    loss, _ = model.discriminator_step(x)
    grads = torch.autograd.grad(loss, list(model.discriminator.parameters()))
    assert all(p.grad is None for p in model.encoder.parameters())
    torch.manual_seed(3)
    reference = vaegan.vaegan_losses(model.encoder, model.decoder, model.discriminator, x,
                                     gamma=0.5).discriminator
    torch.testing.assert_close(loss, reference)
    for g, r in zip(grads, torch.autograd.grad(reference, list(model.discriminator.parameters())),
                    strict=True):
        torch.testing.assert_close(g, r)


def test_vae_dis_keeps_the_gans_discriminator_frozen():
    torch.manual_seed(0)
    trained = gan.GAN(latent=4, width=4)
    model = vaegan.VAEGAN.from_gan(trained, gamma=1.0, layer=1)
    for key, value in trained.generator.state_dict().items():  # the decoder starts at G
        torch.testing.assert_close(model.decoder.state_dict()[key], value, rtol=0, atol=0)
    frozen = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    parameters = [*model.encoder.parameters(), *model.decoder.parameters()]
    fit_once(model, [recipes.adam(parameters, vaegan.VAEGAN.encoder_step, "vae")])
    assert not model.discriminator.training  # fit put the model in train mode
    assert not changed(frozen, model.discriminator)  # weights and batch-norm statistics
    assert changed(encoder, model.encoder)
    for key, value in trained.discriminator.state_dict().items():
        torch.testing.assert_close(frozen[key], value)


def test_vae_dis_takes_a_trained_gan_and_leaves_it_unchanged():
    gan_run = recipes.gan(SMOKE, seed=1, evaluate=False, progress=False)
    before = {k: v.clone() for k, v in gan_run.model.state_dict().items()}
    run = recipes.vaegan(SMOKE, similarity="pretrained", trained=gan_run.model, seed=1,
                         evaluate=False, progress=False)
    assert not changed(before, gan_run.model)
    assert "gan_train" not in run.history and len(run.history["train"]) == SMOKE.vaegan_epochs
    discriminator = gan_run.model.discriminator.state_dict()
    assert not changed(discriminator, run.model.discriminator)
    trained_first = recipes.vaegan(SMOKE, similarity="pretrained", seed=1, evaluate=False,
                                   progress=False)
    assert len(trained_first.history["gan_train"]) == SMOKE.gan_epochs
    assert not changed(discriminator, trained_first.model.discriminator)  # the same GAN


def test_annealed_lowers_each_learning_rate_linearly_to_its_final_fraction():
    steps = [recipes.adam([torch.nn.Parameter(torch.zeros(1))], vaegan.VAEGAN.encoder_step, name,
                          lr=lr) for name, lr in (("a", 1e-3), ("b", 2e-4))]
    seen = []
    hook = recipes.annealed(steps, 5, 0.1, lambda epoch, model: seen.append(epoch))
    rates = []
    for epoch in range(5):
        hook(epoch, None)
        rates.append([s.optimizer.param_groups[0]["lr"] for s in steps])
    for k, (a, b) in enumerate(rates):  # 1 at the first epoch, 0.1 at the last, linear between
        factor = 1 - 0.9 * k / 4
        assert math.isclose(a, 1e-3 * factor) and math.isclose(b, 2e-4 * factor), (k, a, b)
    assert seen == list(range(5))


@pytest.mark.parametrize("similarity, start_lr", [("learned", [2e-4] * 3), ("pretrained", [1e-3])])
def test_vaegan_ends_at_the_final_fraction_of_each_learning_rate(similarity, start_lr,
                                                                 monkeypatch):
    seen, real = [], recipes.annealed

    def spy(steps, epochs, final, before_epoch=None):
        seen.extend(steps)
        return real(steps, epochs, final, before_epoch)

    monkeypatch.setattr(recipes, "annealed", spy)
    epochs = []
    run = recipes.vaegan(SMOKE, similarity=similarity, epochs=3, seed=0, evaluate=False,
                         progress=False, before_epoch=lambda epoch, model: epochs.append(epoch))
    assert epochs == [0, 1, 2] and run.provenance["lr_final"] == recipes.VAEGAN_LR_FINAL
    rates = [step.optimizer.param_groups[0]["lr"] for step in seen]
    assert rates == pytest.approx([lr * recipes.VAEGAN_LR_FINAL for lr in start_lr])


def test_aae_steps_train_their_networks():
    torch.manual_seed(0)
    model = aae.AdversarialAutoencoder("mixture", hidden=16, supervised=True)
    game = aae.AdversarialAutoencoder
    parts = {"decoder": model.autoencoder.decoder, "encoder": model.autoencoder.encoder,
             "discriminator": model.discriminator}
    expected = {"reconstruction": {"decoder", "encoder"}, "discriminator": {"discriminator"},
                "encoder": {"encoder"}}
    for name, params in (("reconstruction", model.autoencoder.parameters()),
                         ("discriminator", model.discriminator.parameters()),
                         ("encoder", model.autoencoder.encoder.parameters())):
        before = {p: {k: v.clone() for k, v in m.state_dict().items()} for p, m in parts.items()}
        fit_once(model, [recipes.adam(params, getattr(game, f"{name}_step"), name)])
        assert {p for p, m in parts.items() if changed(before[p], m)} == expected[name]
    samples = model.sample(20, torch.Generator().manual_seed(0), torch.arange(20) % 10)
    assert samples.shape == (20, 784) and 0 <= samples.min() and samples.max() <= 1


def test_gan_inversion_recovers_an_image_of_the_generator():
    torch.manual_seed(0)
    g = gan.Generator(latent=4, width=4).eval()
    with torch.no_grad():
        x = g(torch.randn(6, 4))
        start = (g(torch.randn(6, 4, generator=torch.Generator().manual_seed(1))) - x).pow(2)
    z = gan.invert(g, x, steps=300, lr=0.05, seed=1)
    with torch.no_grad():
        error = (g(z) - x).pow(2).flatten(1).sum(1)
    assert z.shape == (6, 4) and not z.requires_grad
    assert (error < 0.05 * start.flatten(1).sum(1)).all(), (error, start.flatten(1).sum(1))
    assert all(p.grad is None for p in g.parameters())
    with torch.no_grad():  # as inside recipes.reconstruction_quality (chapter 11)
        torch.testing.assert_close(gan.invert(g, x, steps=300, lr=0.05, seed=1), z, rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda: recipes.aae(SMOKE, prior="gaussian"), r"prior must be one of \('mixture', "),
    (lambda: recipes.vaegan(SMOKE, similarity="pixels"), "similarity must be one of"),
    (lambda: recipes.vaegan(SMOKE, layer=3), r"layer must be an int in 1..2, got 3"),
    (lambda: recipes.vaegan(SMOKE, gamma=-1.0), "gamma must be >= 0, got -1.0"),
    (lambda: recipes.vaegan(SMOKE, trained=gan.GAN(4, 4)),
     r"a trained GAN is VAE_Dis's \(similarity='pretrained'\), got similarity='learned'"),
    (lambda: recipes.gan(SMOKE, latent=0), "latent must be an int >= 1, got 0"),
    (lambda: recipes.annealed([], 3, 0.0), r"final must be a fraction in \(0, 1\], got 0.0"),
    (lambda: recipes.gan(SMOKE, epochs=0), "epochs must be an int >= 1"),
    (lambda: aae.AdversarialAutoencoder(hidden=4).sample(2, labels=torch.zeros(2).long()),
     r"reads no label \(supervised=False\)"),
    (lambda: aae.AdversarialAutoencoder(hidden=4, supervised=True).reconstruction_step(
        torch.rand(2, 784)), "needs batches of \\(images, labels\\)"),
    (lambda: gan.invert(gan.Generator(4, 4), torch.rand(2, 784), steps=0),
     "steps must be an int >= 1, got 0"),
])
def test_bad_arguments_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()




@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("job", ["gan", "vaegan", "aae"])
def test_jobs_on_cuda(job):
    run = recipes.RECIPES[job](SMOKE, device=torch.device("cuda"), progress=False)
    assert run.provenance["device"].startswith("cuda")
    assert config.module_device(run.model).type == "cuda"
    assert all(math.isfinite(v) for v in run.metrics.values() if isinstance(v, float))
