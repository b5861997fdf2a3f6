"""Decoding time with each CPU matmul library (YNNPACK, XLA's Eigen), same model, same sources.

    python experiments/speed/decode_matmuls.py --config=configs/mt_spa_eng_transformer.py [--beam=4] [--n=500]

Builds the config's task and (untrained) model, decodes the first `--n` test sources in batches
of `train.eval_batch_size` with greedy search (`--beam=1`) or beam search, compiled both ways
in one process, and prints the median of 4 alternated rounds. An untrained model rarely ends a
sentence early, so every step up to `text.max_length` runs: the figures are the decoder's cost
per step, not a trained model's wall time.
"""
import statistics
import time

import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from aelab import train
from aelab.compiler import CompilePolicy
from aelab.text import decode

config_flags.DEFINE_config_file("config", None, "a translation or captioning config", lock_config=False)
flags.DEFINE_integer("beam", 4, "beam size; 1 = greedy")
flags.DEFINE_integer("n", 500, "test sources to decode")
flags.DEFINE_integer("rounds", 4, "alternated rounds")


def main(_):
    config, beam = flags.FLAGS.config, flags.FLAGS.beam
    run = train.build(config)
    model = nnx.merge(run.graphdef, run.state)[0]
    test = run.dataset.test
    sources = np.asarray(test.source[:flags.FLAGS.n] if hasattr(test, "source") else test.images[:flags.FLAGS.n])
    length = config.text.max_length
    if beam == 1:
        search = lambda m, s: decode.greedy(m, s, length)  # noqa: E731
    else:
        search = lambda m, s: decode.beam_search(m, s, length, beam, config.decode.length_penalty)  # noqa: E731
    programs = {name: CompilePolicy(run.policy.backend, ynn).jit_model(search, model, "decode")
                for name, ynn in (("eigen", False), ("ynnpack", True))}
    size = config.train.eval_batch_size
    batches = [sources[i:i + size] for i in range(0, len(sources) - size + 1, size)]
    outputs = {name: np.asarray(f(batches[0])) for name, f in programs.items()}  # compiles
    seconds = {name: [] for name in programs}
    for _ in range(flags.FLAGS.rounds):
        for name, f in programs.items():
            start = time.perf_counter()
            for batch in batches:
                np.asarray(f(batch))
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"{len(batches)} batches of {size}, beam {beam}, has convolutions: {run.policy.convolutions}; "
          f"same tokens: {np.array_equal(outputs['eigen'], outputs['ynnpack'])}")
    print(f"eigen {median['eigen']:.3f} s, ynnpack {median['ynnpack']:.3f} s, "
          f"ynnpack/eigen time {median['ynnpack'] / median['eigen']:.3f}")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
