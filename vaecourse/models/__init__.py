"""The book's models: autoencoders, VAE, CVAE, mixture density network and the task networks
(Parts I-III), and the building blocks of Part IV: GAN, VAE/GAN, adversarial autoencoder,
flow warping and the semi-supervised M2.

Import the submodules explicitly, e.g. ``from vaecourse.models import autoencoder``.
"""
