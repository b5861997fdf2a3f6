"""`jit`: jax.jit with aelab's per-backend XLA compiler options.

jax 0.10's CPU backend hands matrix multiplications to YNNPACK by default. On the
2-core x86-64 machine of README's speed table, XLA's own (Eigen) matmuls made
evaluation 5-55% faster and the conv_ae train step 30% faster, while the train
steps of models without convolutions ran 3-7% faster with YNNPACK (mlp_ae,
mlp_vae, the Transformer and the RNN translators; `experiments/speed/compare.py
--also=--nocpu_ynn_dots` and in-process A/Bs), and so did their autoregressive
decoders (less time: Transformer greedy 13%, beam 4 4-6%; RNN greedy 7%, beam 4
3-5%; the conv captioner's beam took 2-3% more; `experiments/speed/decode_matmuls.py`).
So aelab keeps XLA's default in those programs and turns the YNNPACK dot fusion
off for every other program it compiles on CPU (`ynn_dots_for`), each through its
own compiler options (nothing process-wide: a user's other jax code keeps XLA's
defaults). The config's `train.cpu_ynn_dots` (True / False) overrides the rule.
Other backends get no options.
"""

from __future__ import annotations

from typing import Callable

import jax
from flax import nnx

NO_YNN_DOTS = {"xla_cpu_experimental_ynn_fusion_type": ""}


PROGRAMS = ("train", "evaluate", "decode")


def ynn_dots_for(requested: bool | None, program: str, has_convolutions: bool = False) -> bool:
    """Whether a program (one of PROGRAMS) uses YNNPACK dots on CPU: `requested`
    (train.cpu_ynn_dots) when set, else train steps and decoders of models without convolutions."""
    if program not in PROGRAMS:
        raise ValueError(f"program={program!r}; known: {', '.join(PROGRAMS)}")
    if requested is not None:
        return requested
    return program in ("train", "decode") and not has_convolutions


def has_convolutions(model: nnx.Module) -> bool:
    """Whether an nnx model holds a convolution (the matmul library rule above depends on it)."""
    return any(isinstance(m, (nnx.Conv, nnx.ConvTranspose)) for _, m in nnx.iter_modules(model))


def compiler_options(ynn_dots: bool = False) -> dict[str, str] | None:
    """The options aelab compiles with on the current default backend."""
    if jax.default_backend() == "cpu" and not ynn_dots:
        return dict(NO_YNN_DOTS)
    return None


def jit(fun: Callable | None = None, *, ynn_dots: bool = False, **jit_kwargs) -> Callable:
    """`jax.jit(fun, **jit_kwargs)` compiled with `compiler_options(ynn_dots)`; a decorator too."""
    if fun is None:
        return lambda f: jit(f, ynn_dots=ynn_dots, **jit_kwargs)
    return jax.jit(fun, compiler_options=compiler_options(ynn_dots), **jit_kwargs)


def jit_model(fun: Callable, model: nnx.Module, ynn_dots: bool = False) -> Callable:
    """`call(*args) = fun(model, *args)`, one program compiled with `jit`'s options (not op by
    op, as an eager call of the model runs) and reused for every argument shape seen."""
    graphdef, state = nnx.split(model)
    compiled = jit(lambda state, *args: fun(nnx.merge(graphdef, state), *args), ynn_dots=ynn_dots)
    return lambda *args: compiled(state, *args)
