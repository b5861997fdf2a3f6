"""The VAE family's task: neg_elbo, recon, kl and the IWAE NLL in nats per example, whatever it trains.

`vae.objective` chooses what training minimizes:
- `elbo`: recon + beta_t * KL, with beta_t annealed linearly over `vae.kl_warmup_steps` and
  free bits (Kingma et al. 2016) per latent dimension (beta > 1: the beta-VAE);
- `iwae`: the k-sample importance-weighted bound, k = `vae.train_samples` (Burda et al. 2016);
- `tcvae`: recon + MI + beta_t * TC + dimension-wise KL, the KL split by minibatch-weighted
  sampling (Chen et al. 2018, beta-TCVAE), the data set's size taken from the training split;
- `infovae`: recon + (1 - alpha) KL + (alpha + lambda - 1) MMD(q(z), p(z)) with an inverse
  multiquadric kernel (Zhao et al. 2019, InfoVAE; `vae.info_alpha`, `vae.info_lambda`).
Reported `neg_elbo` is always the true bound (beta = 1, no free bits), so runs
with different objectives and tricks compare on one scale. The final evaluation adds
`nll`, the importance-weighted bound of Burda et al. (2016) with k =
`vae.iw_samples`, computed `vae.iw_chunk` samples at a time.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flax import nnx

from aelab import losses, models, plots
from aelab.baselines import ppca_bits_per_dim, ppca_has_density
from aelab.data import Dataset, Split
from aelab.errors import UsageError, choose
from aelab.registry import OBJECTIVES, register_objective
from aelab.tasks import terms
from aelab.models.layers import ACTIVATIONS
from aelab.tasks.autoencoder import ReconstructionTask


def importance_sampled_nll(model, x: jax.Array, rng: jax.Array, k: int, chunk: int,
                           log_likelihood) -> jax.Array:
    """-log p(x) estimated by log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), per example.

    An upper bound on the true NLL that tightens as k grows (k = 1 is the
    negative ELBO). `chunk` samples are decoded at a time; a running
    logsumexp keeps memory independent of k.
    """
    if isinstance(model, models.HierarchicalVAE):  # every layer drawn top-down, `chunk` at a time
        def body(running, key):
            log_w = model.log_weights(x, key, chunk, log_likelihood)
            return jnp.logaddexp(running, jax.scipy.special.logsumexp(log_w, axis=0)), None

        total, _ = jax.lax.scan(body, jnp.full((x.shape[0],), -jnp.inf), jax.random.split(rng, k // chunk))
        return -(total - jnp.log(k))
    mean, logvar = model.posterior(x)
    batch, latent = mean.shape

    def body(running, key):
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, (chunk, batch, latent))
        raw = model.decoder(z.reshape(chunk * batch, latent))
        raw = raw.reshape(chunk, batch, *raw.shape[1:])  # a likelihood's parameters per pixel
        log_w = (jax.vmap(log_likelihood, in_axes=(0, None))(raw, x)
                 + model.log_prior(z) - losses.log_normal(z, mean, logvar))
        return jnp.logaddexp(running, jax.scipy.special.logsumexp(log_w, axis=0)), None

    keys = jax.random.split(rng, k // chunk)
    total, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf), keys)
    return -(total - jnp.log(k))


class VAETask(ReconstructionTask):
    label = "VAE"
    dataset_size: int | None = None  # the training split's, for tcvae (set by prepare)

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        v = config.vae
        if config.loss not in ("bce", "mse", "dlogistic"):
            raise UsageError(f"a VAE needs loss=bce (Bernoulli), loss=mse (Gaussian) or loss=dlogistic "
                             f"(discretized logistic mixture); got {config.loss!r}")
        for key in ("beta", "free_bits", "kl_warmup_steps"):
            if v[key] < 0:
                raise UsageError(f"vae.{key}={v[key]} must be >= 0")
        if v.iw_samples < 1 or v.iw_chunk < 1:
            raise UsageError(f"vae.iw_samples={v.iw_samples} and vae.iw_chunk={v.iw_chunk} must be >= 1")
        if v.iw_samples % min(v.iw_chunk, v.iw_samples):
            raise UsageError(f"vae.iw_samples={v.iw_samples} must be a multiple of vae.iw_chunk={v.iw_chunk}")
        if v.sigma <= 0:
            raise UsageError(f"vae.sigma={v.sigma} must be > 0")
        if v.binarize and config.loss != "bce":
            raise UsageError("vae.binarize=True needs loss=bce (a Bernoulli likelihood)")
        objective = OBJECTIVES.get(v.objective, "vae")
        if objective.check is not None:
            objective.check(v, config)
        choose("vae.prior", v.prior, ("standard", "vamp"))
        if v.prior == "vamp" and (v.objective not in ("elbo", "iwae") or v.free_bits):
            raise UsageError(f"vae.prior=vamp works with vae.objective elbo or iwae and no free bits (its KL "
                             f"has no per-dimension form); got objective {v.objective}, free_bits {v.free_bits}")
        if v.prior == "vamp" and v.pseudo_inputs < 1:
            raise UsageError(f"vae.pseudo_inputs={v.pseudo_inputs} must be >= 1")
        if v.latents and (v.objective not in ("elbo", "iwae") or v.prior != "standard"
                          or any(not isinstance(d, int) or d < 1 for d in v.latents) or v.layer_width < 1):
            raise UsageError(f"vae.latents={tuple(v.latents)} (a hierarchy, sizes bottom to top) needs positive "
                             f"sizes, vae.layer_width >= 1, vae.objective elbo or iwae and vae.prior standard")
        choose("vae.layer_activation", v.layer_activation, ACTIVATIONS)
        if v.temperature <= 0:
            raise UsageError(f"vae.temperature={v.temperature} must be > 0")

    @classmethod
    def config_defaults(cls) -> dict:
        return {**super().config_defaults(), "vae": {
            "beta": 1.0,  # weight of the KL term (beta-VAE)
            "kl_warmup_steps": 0,  # linear KL annealing from 0 to beta over these steps
            "free_bits": 0.0,  # nats per latent dimension below which KL is not penalized
            "sigma": 0.1,  # loss=mse: the Gaussian likelihood's fixed pixel standard deviation
            "binarize": False,  # dynamic binarization of training inputs; eval splits fixed once
            "iw_samples": 1000,  # k of the importance-sampled NLL bound (final evaluation)
            "iw_chunk": 100,  # samples per chunk, so memory stays bounded
            "objective": "elbo",  # elbo | iwae | tcvae | infovae (the module's docstring) | a plugin's
            "prior": "standard",  # standard (N(0, I)) | vamp (a mixture of the posteriors of...
            "pseudo_inputs": 500,  # ...this many learned pseudo-inputs; Tomczak & Welling 2018)
            # A hierarchy of stochastic layers, sizes bottom to top (aelab/models/hierarchical.py);
            # () = one layer of model.latent_dim. The encoder of model.arch gives layer_width features.
            "latents": (),
            "layer_width": 256,
            "layer_activation": "relu",  # of the hierarchy's own layers (between the stochastic layers)
            "temperature": 1.0,  # hierarchical samples: each layer's prior noise scaled by this
            # ...and the keys each registered objective declares (iwae: train_samples; infovae:
            # info_alpha, info_lambda).
            **{key: value for entry in OBJECTIVES.entries("vae") for key, value in entry.config.items()},
        }}

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.VAE:
        self.dims = int(np.prod(image_shape))  # for bits per dimension
        v = self.config.vae
        if v.latents:  # the architecture's encoder gives features, its decoder reads z_1
            encoder, decoder = self._encoder_decoder(image_shape, v.layer_width, rngs, latent_dim=v.latents[0])
            return models.HierarchicalVAE(encoder, decoder, self.loss.link, v.latents, v.layer_width,
                                          v.layer_activation, v.temperature, rngs=rngs)
        latent = self.config.model.latent_dim
        encoder, decoder = self._encoder_decoder(image_shape, 2 * latent, rngs)  # mean and log-variance
        v = self.config.vae
        pseudo = (jax.random.uniform(rngs.params(), (v.pseudo_inputs, *image_shape))  # random images to start
                  if v.prior == "vamp" else None)
        return models.VAE(encoder, decoder, self.loss.link, latent, pseudo)

    @property
    def code_size(self) -> int:
        return sum(self.config.vae.latents) or self.config.model.latent_dim

    def prepare(self, dataset: Dataset) -> Dataset:
        """With binarization, val and test are binarized once (fixed seed): a fixed test set."""
        dataset = super().prepare(dataset)
        self.dataset_size = len(dataset.train)
        if not self.config.vae.binarize:
            return dataset
        rng = np.random.default_rng([self.config.data.split_seed, 2])

        def fixed(split: Split) -> Split:
            split = split.in_memory()  # binarized once, so held in memory (MNIST-sized sets)
            draws = rng.random(split.images.shape, dtype=np.float32)
            return dataclasses.replace(split, images=(draws < split.images).astype(np.float32))
        return dataclasses.replace(dataset, val=fixed(dataset.val), test=fixed(dataset.test))

    def log_likelihood(self, raw: jax.Array, x: jax.Array) -> jax.Array:
        """log p(x|z) per example, from the decoder's raw output."""
        if self.config.loss == "mse":
            return -losses.gaussian_nll(raw, x, self.config.vae.sigma)
        return -self.loss.per_example(raw, x)

    def context(self, model, batch, rng: jax.Array, step, mask=None) -> terms.Context:
        """Training: the step's key splits into the sample's and the binarization's, and a
        binarized likelihood sees the batch binarized afresh."""
        x = batch["image"]
        if step is None:
            return terms.Context(self, model, x, rng, step, mask)
        sample_rng, binarize_rng = jax.random.split(rng)
        if self.config.vae.binarize:
            x = jax.random.bernoulli(binarize_rng, x).astype(x.dtype)
        return terms.Context(self, model, x, sample_rng, step, mask)

    def forward(self, ctx: terms.Context) -> terms.Forward:
        """One posterior sample per example (reparameterized) and its terms."""
        model, x = ctx.model, ctx.x
        x_in = self._corrupt(x, ctx.key("corruption"), ctx.training)
        if isinstance(model, models.HierarchicalVAE):
            raw, kl_dims = model.elbo_terms(x_in, ctx.rng)
            return terms.Forward(x_in, None, raw, -self.log_likelihood(raw, x), kl=kl_dims.sum(axis=-1),
                                 kl_dims=kl_dims)
        mean, logvar = model.posterior(x_in)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(ctx.rng, mean.shape)
        raw = model.decoder(z)
        if self.config.vae.prior == "vamp":  # no closed form: log q(z|x) - log p(z) at the sample
            kl, kl_dims = losses.log_normal(z, mean, logvar) - model.log_prior(z), None
        else:
            kl_dims = losses.gaussian_kl(mean, logvar)
            kl = kl_dims.sum(axis=-1)
        return terms.Forward(x_in, z, raw, -self.log_likelihood(raw, x), mean, logvar, kl, kl_dims)

    def objective(self, ctx: terms.Context):
        return OBJECTIVES.get(self.config.vae.objective, "vae").target(ctx)

    def evaluation(self, ctx: terms.Context, final: bool, penalties: list) -> dict:
        f, x, model = ctx.forward, ctx.x, ctx.model
        mean_reconstruction = model.decode(model.encode(x))
        metrics = {"neg_elbo": f.recon + f.kl, "recon": f.recon, "kl": f.kl,
                   "recon_sse": losses.sse(mean_reconstruction, x), "psnr": losses.psnr(mean_reconstruction, x)}
        if f.kl_dims is not None:
            metrics["active_units"] = f.kl_dims  # summarized: dimensions with mean KL > 0.01 nats
        if final:
            v = self.config.vae
            metrics["nll"] = importance_sampled_nll(model, x, ctx.key("nll"), v.iw_samples,
                                                    min(v.iw_chunk, v.iw_samples), self.log_likelihood)
        return metrics

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        kl_per_dim = means.pop("active_units", None)
        out = {k: float(v) for k, v in means.items()}
        if kl_per_dim is not None:
            out["active_units"] = float(np.sum(kl_per_dim > 0.01))
        # Bits per dimension where the likelihood is one of the data's values: the discretized
        # logistic and the Bernoulli of binarized pixels; the Gaussian, a density on [0, 1] of
        # 8-bit data, adds 8 bits a dimension. bce on grey values is no likelihood of them.
        loss = self.config.loss
        if loss in ("dlogistic", "mse") or self.config.vae.binarize:
            for name, bits in (("neg_elbo", "bits_per_dim"), ("nll", "nll_bits_per_dim")):
                if name in out:
                    out[bits] = float(losses.bits_per_dim(out[name], self.dims, continuous=loss == "mse"))
        return out

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """PCA's reconstruction at the code size and, where the VAE reports bits/dim of 8-bit
        pixels, probabilistic PCA's density in the same bits (test, and validation for choices):
        the linear model of each."""
        out, pca = super().baselines(dataset), self._pca(dataset)
        if self.config.loss in ("dlogistic", "mse") and not self.config.vae.binarize and ppca_has_density(pca):
            out["pca"]["bits_per_dim"] = ppca_bits_per_dim(pca, dataset.test.images)
            out["pca"]["val_bits_per_dim"] = ppca_bits_per_dim(pca, dataset.val.images)
        return out

    def figures(self, model, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        super().figures(model, dataset, records, figure_dir, baselines)
        plots.curves(records, "neg_elbo", os.path.join(figure_dir, "neg_elbo.png"),
                     "neg_elbo (nats per example)")
        samples = np.asarray(self.policy.jit_model(lambda m, key: m.sample(64, key), model)(
            jax.random.key(self.config.seed)))
        plots.sample_grid(samples, os.path.join(figure_dir, "samples.png"))


# --- the objectives, registered as a plugin's are ---------------------------------------------------

def warmed_up_beta(v, step) -> jax.Array:
    """beta, annealed linearly from 0 over vae.kl_warmup_steps."""
    return v.beta * (jnp.minimum(1.0, step / v.kl_warmup_steps) if v.kl_warmup_steps else 1.0)


def bound_metrics(f: terms.Forward) -> dict:
    return {"neg_elbo": (f.recon + f.kl).mean(), "recon": f.recon.mean(), "kl": f.kl.mean()}


@register_objective("elbo")
def elbo(ctx: terms.Context):
    """recon + beta_t * KL, beta_t warmed up, with free bits per latent dimension (beta > 1: the beta-VAE)."""
    f, v = ctx.forward, ctx.config.vae
    beta = warmed_up_beta(v, ctx.step)
    kl = jnp.sum(jnp.maximum(f.kl_dims.mean(axis=0), v.free_bits)) if v.free_bits else f.kl.mean()
    return f.recon.mean() + beta * kl, {**bound_metrics(f), "beta": beta}


def _check_iwae(v, config) -> None:
    if v.beta != 1.0 or v.free_bits or v.kl_warmup_steps:
        raise UsageError("vae.objective=iwae trains the importance-weighted bound itself; vae.beta, "
                         "vae.free_bits and vae.kl_warmup_steps belong to the elbo objective")
    if v.train_samples < 1:
        raise UsageError(f"vae.train_samples={v.train_samples} must be >= 1")


@register_objective("iwae", config={"train_samples": 5}, check=_check_iwae)
def iwae(ctx: terms.Context):
    """The k-sample importance-weighted bound, k = vae.train_samples (Burda et al. 2016)."""
    k = ctx.config.vae.train_samples
    bound = importance_sampled_nll(ctx.model, ctx.x, ctx.rng, k, k, ctx.task.log_likelihood).mean()
    return bound, {"iwae_bound": bound}


def _check_tcvae(v, config) -> None:
    if v.free_bits:
        raise UsageError("vae.free_bits belongs to the elbo objective; tcvae weights its own terms")


@register_objective("tcvae", check=_check_tcvae)
def tcvae(ctx: terms.Context):
    """recon + MI + beta_t * TC + dimension-wise KL by minibatch-weighted sampling (Chen et al. 2018)."""
    f, v, size = ctx.forward, ctx.config.vae, ctx.task.dataset_size
    if size is None:
        raise UsageError("vae.objective=tcvae needs the training split's size; prepare the data set first")
    beta = warmed_up_beta(v, ctx.step)
    parts = {k: t.mean() for k, t in losses.total_correlation_terms(f.code, f.mean, f.logvar, size).items()}
    loss = f.recon.mean() + parts["mutual_information"] + beta * parts["total_correlation"] + parts["dimension_kl"]
    return loss, {**bound_metrics(f), **parts, "beta": beta}


def _check_infovae(v, config) -> None:
    if v.info_lambda < 0 or not 0 <= v.info_alpha <= 1:
        raise UsageError(f"vae.info_alpha={v.info_alpha} must lie in [0, 1] and vae.info_lambda="
                         f"{v.info_lambda} be >= 0")


@register_objective("infovae", config={"info_alpha": 0.0, "info_lambda": 1000.0}, check=_check_infovae)
def infovae(ctx: terms.Context):
    """recon + (1 - alpha) KL + (alpha + lambda - 1) MMD(q(z), p(z)) (Zhao et al. 2019)."""
    f, v = ctx.forward, ctx.config.vae
    mmd = losses.mmd_imq(f.code, jax.random.normal(ctx.key("prior"), f.code.shape))
    loss = f.recon.mean() + (1.0 - v.info_alpha) * f.kl.mean() + (v.info_alpha + v.info_lambda - 1.0) * mmd
    return loss, {**bound_metrics(f), "mmd": mmd}
