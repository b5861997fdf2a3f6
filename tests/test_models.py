"""Shapes of every model and code size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aelab.config import base_config, resolve
from aelab.tasks import get_task


def build(arch, image_shape, latent_dim, loss="bce", **model):
    config = base_config()
    config.loss = loss
    config.model.arch = arch
    config.model.latent_dim = latent_dim
    for k, v in model.items():
        config.model[arch][k] = v
    return get_task(resolve(config)).build_model(image_shape, nnx.Rngs(params=0))


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (28, 28, 1), (5, 7, 3)])
@pytest.mark.parametrize("latent_dim", [1, 30])
def test_mlp_shapes(image_shape, latent_dim):
    model = build("mlp", image_shape, latent_dim, hidden=(20, 10))
    x = jnp.zeros((3, *image_shape))
    assert model.encode(x).shape == (3, latent_dim)
    assert model(x).shape == (3, *image_shape)
    assert model.decode(jnp.zeros((2, latent_dim))).shape == (2, *image_shape)


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("image_shape,strides", [((28, 28, 1), (2, 2)), ((8, 8, 1), (2, 2)),
                                                  ((30, 30, 3), (2, 2, 2)), ((9, 13, 2), (1, 3))])
def test_conv_shapes(upsample, image_shape, strides):
    channels = tuple(8 * (i + 1) for i in range(len(strides)))
    model = build("conv", image_shape, 6, channels=channels, strides=strides, upsample=upsample)
    x = jnp.zeros((2, *image_shape))
    assert model.encode(x).shape == (2, 6)
    assert model(x).shape == (2, *image_shape)


@pytest.mark.parametrize("upsample", ["resize", "transpose"])
@pytest.mark.parametrize("image_shape", [(32, 32, 3), (28, 28, 1), (9, 13, 2)])
def test_resnet_shapes(upsample, image_shape):
    model = build("resnet", image_shape, 6, channels=(8, 16, 16), blocks=2, upsample=upsample)
    x = jnp.zeros((2, *image_shape))
    assert model.encode(x).shape == (2, 6)
    assert model(x).shape == (2, *image_shape)
    assert len(model.encoder.stages) == 3 and len(model.encoder.stages[0]) == 2


def test_resnet_is_the_reference_w4_layer_for_layer():
    """Stages 32/64/128 of one block, a 64-d Gaussian latent on 32x32x3: the PyTorch reference's
    ResNetVAE (../shared/bench/torch_ref.py) has 2,544,387 parameters, counted there."""
    config = base_config("vae")
    config.model.arch, config.model.resnet.channels, config.model.latent_dim, config.model.resnet.upsample = (
        "resnet", (32, 64, 128), 64, "resize")
    model = get_task(resolve(config)).build_model((32, 32, 3), nnx.Rngs(params=0))
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == 2_544_387
    with pytest.raises(ValueError, match=r"model.resnet.groups=8 dividing every width"):
        build("resnet", (8, 8, 1), 2, channels=(8, 12))


def test_bce_models_decode_to_probabilities_and_mse_models_to_raw_values():
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    bce = build("mlp", (8, 8, 1), 3)
    out = bce.reconstruct(x)
    assert jnp.all((out >= 0) & (out <= 1))
    assert jnp.allclose(out, jax.nn.sigmoid(bce(x)))
    mse = build("mlp", (8, 8, 1), 3, loss="mse")
    assert jnp.allclose(mse.reconstruct(x), mse(x))


def test_mlp_widths_follow_config_and_mirror():
    model = build("mlp", (28, 28, 1), 30, hidden=(1000, 500, 250))
    enc = [layer.kernel.shape for layer in model.encoder.mlp.layers]
    dec = [layer.kernel.shape for layer in model.decoder.mlp.layers]
    assert enc == [(784, 1000), (1000, 500), (500, 250), (250, 30)]
    assert dec == [(30, 250), (250, 500), (500, 1000), (1000, 784)]


def test_bad_architecture_names_are_rejected():
    with pytest.raises(ValueError, match="unknown model.arch 'rnn' for task autoencoder"):
        build("rnn", (8, 8, 1), 2)
    with pytest.raises(ValueError, match="unknown model.mlp.activation 'swishy'"):
        build("mlp", (8, 8, 1), 2, activation="swishy")
    with pytest.raises(ValueError, match="same length"):
        build("conv", (8, 8, 1), 2, channels=(8, 16), strides=(2,))


def subpixel_decoder(kind: str):
    from aelab.models.conv import ConvDecoder
    from aelab.models.resnet import ResNetDecoder

    rngs = nnx.Rngs(0)
    return {"conv transpose": lambda: ConvDecoder((28, 28, 1), 6, (32, 64), (2, 2), 3, "relu", "transpose", rngs=rngs),
            "conv resize": lambda: ConvDecoder((5, 7, 3), 6, (16, 8), (2, 1), 3, "relu", "resize", rngs=rngs),
            "resnet resize": lambda: ResNetDecoder((5, 7, 3), 6, (8, 16), 1, 4, "resize", rngs=rngs),
            "resnet transpose": lambda: ResNetDecoder((5, 7, 3), 6, (8, 16), 1, 4, "transpose", rngs=rngs)}[kind]()


@pytest.mark.parametrize("kind", ["conv transpose", "conv resize", "resnet resize", "resnet transpose"])
def test_subpixel_upsampling_equals_the_native_layers(kind):
    """Where the compile policy asks for it, decoders compute stride-2 3x3 transposed convolutions
    and nearest x2 + 3x3 convolutions as a convolution at the input's resolution and
    depth-to-space; values and gradients must equal the native layers' from the same parameters
    (odd sizes included: 5x7 -> 3x4 -> 6x8, cropped)."""
    from aelab.models.conv import subpixel_applies

    decoder = subpixel_decoder(kind)
    if kind == "conv transpose":  # into 32 channels, and into the image's 1, where the native op is faster
        assert subpixel_applies(decoder.ups[0], 2) and not subpixel_applies(decoder.ups[1], 2)
    z = jax.random.normal(jax.random.key(1), (2, 6))

    def output_and_grads(fast):
        decoder.subpixel = fast
        loss = lambda d: jnp.sum(jnp.sin(d(z)))  # noqa: E731
        return decoder(z), nnx.grad(loss)(decoder)

    (fast_out, fast_grads), (native_out, native_grads) = output_and_grads(True), output_and_grads(False)
    assert fast_out.shape == native_out.shape == (2, *decoder.image_shape)
    np.testing.assert_allclose(fast_out, native_out, atol=1e-5)
    for a, b in zip(jax.tree.leaves(fast_grads), jax.tree.leaves(native_grads), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_dense_is_nnx_linear_over_rows_with_the_same_parameters_and_gradients():
    from aelab.models.layers import Dense

    dense, linear = Dense(5, 3, rngs=nnx.Rngs(0)), nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    assert jax.tree.map(np.shape, nnx.state(dense)) == jax.tree.map(np.shape, nnx.state(linear))  # checkpoints
    x = jax.random.normal(jax.random.key(1), (2, 4, 6, 5))
    np.testing.assert_allclose(dense(x), linear(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense(x[0, 0]), linear(x[0, 0]), rtol=1e-5, atol=1e-6)

    def loss(model):
        return jnp.sum(jnp.tanh(model(x)))

    ours, theirs = nnx.grad(loss)(dense), nnx.grad(loss)(linear)
    np.testing.assert_allclose(ours["kernel"][...], theirs["kernel"][...], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours["bias"][...], theirs["bias"][...], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,groups", [((4, 8, 8, 32), 8), ((3, 5, 16), 4), ((2, 4, 4, 3, 12), 3)])
def test_group_norm_is_nnx_group_norm_with_the_same_parameters_and_gradients(shape, groups):
    from aelab.models.layers import GroupNorm

    ours = GroupNorm(shape[-1], num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    theirs = nnx.GroupNorm(shape[-1], num_groups=groups, epsilon=1e-5, rngs=nnx.Rngs(0))
    assert jax.tree.map(np.shape, nnx.state(ours)) == jax.tree.map(np.shape, nnx.state(theirs))  # checkpoints
    keys = jax.random.split(jax.random.key(1), 3)
    for norm in (ours, theirs):  # not the initial ones and zeros, so both parameters matter
        norm.scale[...] = jax.random.normal(keys[0], (shape[-1],))
        norm.bias[...] = jax.random.normal(keys[1], (shape[-1],))
    x = 3.0 * jax.random.normal(keys[2], shape) + 1.0  # a mean far from 0, as E[x^2] - E[x]^2 must cope
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)

    def loss(norm, x):
        return jnp.sum(jnp.sin(norm(x)))

    (ours_p, ours_x), (theirs_p, theirs_x) = (nnx.grad(loss, argnums=(0, 1))(n, x) for n in (ours, theirs))
    np.testing.assert_allclose(ours_x, theirs_x, rtol=1e-4, atol=1e-5)
    for name in ("scale", "bias"):
        np.testing.assert_allclose(ours_p[name][...], theirs_p[name][...], rtol=1e-4, atol=1e-4)


def test_group_norm_with_flax_options_it_does_not_specialize_is_flax_group_norm():
    from aelab.models.layers import GroupNorm

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
    mask = jnp.broadcast_to(jnp.arange(4)[None, :, None, None] < 3, x.shape)  # the first 3 rows
    for options, call in (({"reduction_axes": (1, -1)}, {}), ({"use_fast_variance": False}, {}), ({}, {"mask": mask})):
        ours = GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0), **options)
        theirs = nnx.GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0), **options)
        np.testing.assert_array_equal(ours(x, **call), theirs(x, **call))
