"""Generated shapes with known factors, and the MIG and DCI metrics against hand-made codes."""

import json

import numpy as np
import pytest
from conftest import tiny_config

from aelab import data, disentanglement, main, train
from aelab.data.factors import VARIANTS, read_dsprites


def test_dsprites_draws_every_factor_combination_and_each_factor_changes_the_image_as_named():
    split = read_dsprites("small")["train"]
    canvas, counts = VARIANTS["small"]
    assert len(split) == np.prod(counts) and split.factors.shape == (len(split), 5)
    assert split.images.shape == (len(split), canvas, canvas, 1)
    np.testing.assert_array_equal(split.labels, split.factors[:, 0])  # the shape is the class

    def image(shape=0, scale=3, turn=0, x=8, y=8):
        return split.images[int(np.ravel_multi_index((shape, scale, turn, x, y), counts))][..., 0]

    def centre(im):
        ys, xs = np.nonzero(im)
        return xs.mean(), ys.mean()

    areas = [image(scale=s).sum() for s in range(counts[1])]
    assert all(a <= b for a, b in zip(areas, areas[1:])) and areas[-1] > 3 * areas[0], areas  # scale grows it
    xs = [centre(image(x=x))[0] for x in range(0, 16, 3)]
    ys = [centre(image(y=y))[1] for y in range(0, 16, 3)]
    assert all(a < b for a, b in zip(xs, xs[1:])) and all(a < b for a, b in zip(ys, ys[1:]))
    assert not np.array_equal(image(turn=0), image(turn=1))  # a square turned by 36 degrees
    shapes = [image(shape=k) for k in range(3)]
    assert all(not np.array_equal(a, b) for i, a in enumerate(shapes) for b in shapes[i + 1:])
    assert set(np.unique(image()).tolist()) == {0.0, 1.0}


def test_mig_by_hand():
    """Codes that copy each factor: every factor's best code holds all of its entropy and the
    next none (up to the plug-in estimate's bias on 4,000 samples), MIG 1. A factor copied
    into two codes has no gap: 0 for it. Noise: near 0."""
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 3, 4000), rng.integers(0, 5, 4000)], axis=1)
    assert disentanglement.mig(factors.astype(float), factors)["mig"] == pytest.approx(1.0, abs=0.005)  # sampling bias
    twice = np.stack([factors[:, 0], factors[:, 0], factors[:, 1]], axis=1).astype(float)
    per_factor = disentanglement.mig(twice, factors)["mig_per_factor"]
    assert per_factor[0] == pytest.approx(0.0, abs=1e-9) and per_factor[1] == pytest.approx(1.0, abs=0.005)
    assert disentanglement.mig(rng.normal(size=(4000, 4)), factors)["mig"] < 0.02


def test_dci_from_an_importance_matrix_by_hand():
    one_to_one = disentanglement.dci_from_importance(np.eye(3))
    assert one_to_one == pytest.approx({"disentanglement": 1.0, "completeness": 1.0}, abs=1e-6)
    uniform = disentanglement.dci_from_importance(np.ones((3, 3)))
    assert uniform == pytest.approx({"disentanglement": 0.0, "completeness": 0.0}, abs=1e-6)
    # One code explains both factors, the other nothing: each factor is complete (one code),
    # and the only weighted code spreads evenly over two factors (entropy 1 in base 2).
    shared = disentanglement.dci_from_importance(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert shared == pytest.approx({"disentanglement": 0.0, "completeness": 1.0}, abs=1e-6)


def test_dci_tells_disentangled_codes_from_rotated_ones():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 4, (600, 2))
    codes = factors + rng.normal(0, 0.05, factors.shape)
    rotated = codes @ np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    clean = disentanglement.dci(codes[:500], factors[:500], codes[500:], factors[500:])
    mixed = disentanglement.dci(rotated[:500], factors[:500], rotated[500:], factors[500:])
    assert clean["informativeness"] > 0.95 and clean["disentanglement"] > 0.9
    assert mixed["disentanglement"] < clean["disentanglement"] - 0.3


def test_disentangle_scores_a_trained_run_and_refuses_data_without_factors(tmp_path, capsys):
    config = tiny_config(**{"task": "vae", "data.name": "dsprites:small", "model.latent_dim": 4,
                            "train.num_steps": 20, "train.eval_every": 20, "train.batch_size": 32,
                            "vae.iw_samples": 2, "vae.iw_chunk": 2, "data.val_fraction": 0.02,
                            "data.test_fraction": 0.02})
    summary = train.train_and_evaluate(config, str(tmp_path / "w"))
    assert summary["data"]["input"] == "in memory"
    assert main.main(["aelab", "disentangle", f"--workdir={tmp_path / 'w'}", "--examples=600"]) == 0
    result = json.loads((tmp_path / "w" / "uses" / "disentanglement.json").read_text())
    assert result["examples"] == 600 and len(result["mig_per_factor"]) == 5
    assert 0 <= result["mig"] <= 1 and 0 <= result["disentanglement"] <= 1 and 0 <= result["completeness"] <= 1
    assert np.asarray(result["importance"]).shape == (4, 5)
    assert (tmp_path / "w" / "uses" / "traversals.png").exists()
    train.train_and_evaluate(tiny_config(**{"train.num_steps": 5}), str(tmp_path / "digits"))
    capsys.readouterr()
    assert main.main(["aelab", "disentangle", f"--workdir={tmp_path / 'digits'}"]) == 2
    assert "has no known factors of variation" in capsys.readouterr().err


def test_dsprites_names():
    config = tiny_config(**{"data.name": "dsprites:large"})
    with pytest.raises(Exception, match="unknown dsprites variant 'large'; accepted: dsprites, dsprites:small"):
        data.load(config.data)
