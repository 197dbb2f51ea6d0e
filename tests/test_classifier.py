"""vaecourse.models.classifier and recipes.classifier: the digit classifier of chapter 6."""

import dataclasses

import pytest
import torch

from vaecourse import config, recipes
from vaecourse.models import classifier

SMOKE = config.PRESETS["smoke"]


def test_predict_gives_a_class_and_its_probability_per_image():
    net = classifier.DigitClassifier()
    images = torch.rand(7, 784)
    label, confidence = classifier.predict(net, images, batch_size=3)
    with torch.no_grad():
        probs = torch.softmax(net(images), -1)
    assert label.shape == confidence.shape == (7,)
    torch.testing.assert_close(confidence, probs.max(-1).values)
    assert torch.equal(label, probs.argmax(-1))
    assert not net.training  # predict evaluates in eval mode


def test_predict_rejects_images_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict(classifier.DigitClassifier(), torch.full((2, 784), 2.0))


def test_loss_is_the_cross_entropy_of_grey_or_binarized_digits():
    net = classifier.DigitClassifier()
    x, labels = torch.full((4, 784), 0.3), torch.tensor([0, 1, 2, 3])
    loss, parts = net.loss((x, labels))
    assert loss.item() == pytest.approx(parts["loss"])
    # a binary batch is unchanged by the binarization half of the mix
    binary = (torch.rand(4, 784) < 0.5).float()
    expected = torch.nn.functional.cross_entropy(net(binary), labels)
    assert net.loss((binary, labels))[0].item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_classifier_learns_the_digits():
    """Three epochs on the smoke preset's 500 training digits: far above chance (0.1) on the
    100 test digits; 0.6 is more than 10 binomial standard errors above chance."""
    run = recipes.classifier(dataclasses.replace(SMOKE, classifier_epochs=3), progress=False)
    assert run.metrics["test_accuracy_grey"] > 0.6
    assert run.metrics["test_accuracy_binary"] > 0.6
    assert run.provenance["job"] == "classifier" and run.provenance["epochs"] == 3
