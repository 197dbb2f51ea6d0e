"""The book's models: autoencoders, VAE, CVAE, mixture density network and the task networks.

Import the submodules explicitly, e.g. ``from vaecourse.models import autoencoder``.
"""
