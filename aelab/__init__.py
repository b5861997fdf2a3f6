"""aelab: encoder-decoder models and autoencoders in JAX/Flax NNX."""

__version__ = "0.1.0"
