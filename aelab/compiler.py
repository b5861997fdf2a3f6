"""The compile policy: every choice that exists only for speed on one backend, in one object.

A `CompilePolicy` is built once per run from the backend and the config
(`CompilePolicy.for_config`). Core code asks it, and nothing else looks at the
backend, so a trick for one backend cannot leak into another: on GPU and TPU
every method below answers "XLA's default". On XLA:CPU it chooses

- the matmul library per program (`options`): YNNPACK, XLA's default, in the
  train steps and decoders of models without convolutions; XLA's Eigen
  matmuls everywhere else, where YNNPACK still computes reductions;
  `train.cpu_ynn_dots` True / False overrides it;
- steps per dispatch (`steps_per_dispatch`): one for models with
  convolutions, whose gradients run far slower inside a device loop there;
- update ordering (`order_updates`): each dense kernel's update waits for
  the whole backward pass, so XLA updates donated kernels in place instead of
  copying them first;
- sub-pixel upsampling (`subpixel_upsampling`) in conv and residual decoders;
- the softplus of the Bernoulli loss (`softplus`): an exp-and-series form
  instead of XLA:CPU's slow log expansion.

Why each pays, with the figures: experiments/speed/README.md.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import ml_collections
from flax import nnx

from aelab import losses

# Eigen's matmuls and convolutions, YNNPACK's reductions (XLA:CPU's own are slower: GroupNorm's statistics).
NO_YNN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
PROGRAMS = ("train", "evaluate", "decode", "other")

# JAX's persistent-cache events: each compilation that asks the cache, each one it serves, and
# each compiled program written to it (those that took at least the cache's minimum compile time).
_CACHE_EVENTS = {"/jax/compilation_cache/compile_requests_use_cache": "requests",
                 "/jax/compilation_cache/cache_hits": "hits",
                 "/jax/compilation_cache/cache_misses": "writes"}
_cache_counts = {"requests": 0, "hits": 0, "writes": 0}


def _count_cache_event(event: str, **kwargs) -> None:
    if event in _CACHE_EVENTS:
        _cache_counts[_CACHE_EVENTS[event]] += 1


jax.monitoring.register_event_listener(_count_cache_event)


def cache_counts() -> dict[str, int]:
    """How many compilations of this process asked the persistent compilation cache, how many it
    served, and how many it stored: a repeated run is served every program the first one stored,
    and stores nothing new."""
    return dict(_cache_counts)


# The persistent compilation cache: the user's, never a run's folder (a use of a run compiles
# into it whatever that run's config.json says).
USER_CACHE = "~/.cache/aelab/jax"


def enable_compile_cache(directory: str) -> None:
    """JAX's persistent compilation cache in `directory` ("" = off), so a resumed or repeated run
    skips compiling; a cache already chosen (JAX_COMPILATION_CACHE_DIR, or in code) wins.
    Programs that compile in 0.2 s or more are kept (JAX's default, 1 s, left the evaluation
    and decoding steps out), unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise."""
    if directory and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def has_convolutions(model: nnx.Module) -> bool:
    """Whether an nnx model holds a convolution (several CPU choices depend on it)."""
    return any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_modules(model))


@dataclasses.dataclass(frozen=True)
class CompilePolicy:
    """Backend-specific compilation choices. `backend` is jax's platform name ("cpu", "gpu",
    "tpu"); `cpu_ynn_dots` is train.cpu_ynn_dots (None: the rule above); `convolutions`
    whether the run's model has any (`with_model`)."""

    backend: str
    cpu_ynn_dots: bool | None = None
    convolutions: bool = False

    @classmethod
    def for_config(cls, config: ml_collections.ConfigDict | None = None) -> "CompilePolicy":
        """The policy of a run of `config` on this process's default backend."""
        requested = config.train.cpu_ynn_dots if config is not None else None
        return cls(jax.default_backend(), requested)

    def with_model(self, model: nnx.Module) -> "CompilePolicy":
        """This policy for the programs of `model` (some choices depend on its convolutions)."""
        return dataclasses.replace(self, convolutions=has_convolutions(model))

    @property
    def cpu(self) -> bool:
        return self.backend == "cpu"

    def ynn_dots(self, program: str) -> bool:
        """Whether `program` (one of PROGRAMS) uses YNNPACK matmuls on CPU."""
        if program not in PROGRAMS:
            raise ValueError(f"program={program!r}; known: {', '.join(PROGRAMS)}")
        if self.cpu_ynn_dots is not None:
            return self.cpu_ynn_dots
        return program in ("train", "decode") and not self.convolutions

    def options(self, program: str) -> dict[str, str] | None:
        """The XLA compiler options of `program`; None (XLA's defaults) off CPU."""
        if self.cpu and not self.ynn_dots(program):
            return dict(NO_YNN_DOTS)
        return None

    def jit(self, fun: Callable | None = None, *, program: str = "other", **jit_kwargs) -> Callable:
        """`jax.jit(fun, **jit_kwargs)` compiled with `options(program)`; a decorator too."""
        if fun is None:
            return lambda f: self.jit(f, program=program, **jit_kwargs)
        return jax.jit(fun, compiler_options=self.options(program), **jit_kwargs)

    def jit_model(self, fun: Callable, model: nnx.Module, program: str = "other") -> Callable:
        """`call(*args) = fun(model, *args)`, one program compiled with this policy (not op by op,
        as an eager call of the model runs) and reused for every argument shape seen."""
        graphdef, state = nnx.split(model)
        compiled = self.with_model(model).jit(lambda state, *args: fun(nnx.merge(graphdef, state), *args),
                                              program=program)
        return lambda *args: compiled(state, *args)

    def steps_per_dispatch(self, requested: int) -> int:
        """`train.steps_per_dispatch`, but 1 on CPU for a model with convolutions."""
        return 1 if self.cpu and self.convolutions else requested

    @property
    def order_updates(self) -> bool:
        """Whether the train step makes dense kernels' updates wait for the whole backward pass
        (`optim.after_whole_backward`)."""
        return self.cpu

    @property
    def subpixel_upsampling(self) -> bool:
        """Whether conv and residual decoders compute their x2 upsampling layers into 8 or more
        channels (stride-2 3x3 transposed convolutions, nearest x2 then a 3x3 convolution) as a
        convolution at the input's resolution and depth-to-space (`models.conv`)."""
        return self.cpu

    @property
    def softplus(self) -> Callable[[jax.Array], jax.Array]:
        """The softplus of the Bernoulli loss: `losses.softplus_series` on CPU, else jax's."""
        return losses.softplus_series if self.cpu else jax.nn.softplus


def jit(fun: Callable | None = None, **jit_kwargs) -> Callable:
    """`jax.jit` with the default policy of this backend, for code outside a run (tests, tools):
    XLA's Eigen matmuls on CPU, XLA's defaults elsewhere."""
    return CompilePolicy.for_config().jit(fun, **jit_kwargs)
