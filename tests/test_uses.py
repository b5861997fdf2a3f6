"""Uses of a trained autoencoder: embed, latent maps, probes, denoising, anomaly detection."""

import json

import numpy as np
import pytest

from aelab import restore, train
from aelab.errors import UsageError
from aelab.main import main
from aelab.uses.anomaly import detection_scores, one_class_table, threshold_for_fpr
from aelab.uses.denoise import parse_spec, ssim
from conftest import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits autoencoder with a 2-D code, trained once for this module."""
    workdir = tmp_path_factory.mktemp("ae2")
    train.train_and_evaluate(tiny_config(**{"model.latent_dim": 2, "train.num_steps": 60}), str(workdir))
    return workdir


@pytest.fixture(scope="module")
def one_class(tmp_path_factory):
    """A tiny autoencoder trained on the digit 0 only (the one-class protocol)."""
    workdir = tmp_path_factory.mktemp("zero")
    config = tiny_config(**{"data.normal_classes": (0,), "train.num_steps": 200,
                            "optimizer.learning_rate": 3e-3, "train.batch_size": 16})
    train.train_and_evaluate(config, str(workdir))
    return workdir


def test_auroc_and_auprc_against_a_hand_computed_case():
    # Pairs (anomalous, normal) ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: (0.35<0.4) -> 3/4.
    scores = detection_scores(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert scores["auroc"] == pytest.approx(0.75)
    # Precision at each anomaly's rank: 0.8 -> 1/1, 0.35 -> 2/3; average precision = (1 + 2/3) / 2.
    assert scores["auprc"] == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_threshold_respects_the_target_false_positive_rate(target):
    normal = np.random.default_rng(0).normal(size=1000)
    t = threshold_for_fpr(normal, target)
    assert np.mean(normal > t) <= target
    assert np.mean(normal >= t) > target - 1e-9  # and no larger than it must be


def test_ssim_known_values_and_noise_specs():
    a = np.full((1, 8, 8, 1), 0.5)
    assert ssim(a, a)[0] == pytest.approx(1.0)
    # Constant images: SSIM reduces to the luminance term (2 mx my + C1) / (mx^2 + my^2 + C1).
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * 0.4 + c1) / (0.25 + 0.16 + c1)
    assert ssim(a, np.full((1, 8, 8, 1), 0.4))[0] == pytest.approx(expected, rel=1e-6)
    assert parse_spec("gaussian:0.1,0.3") == ("gaussian", [0.1, 0.3])


def test_embed_round_trips_shapes_and_labels_and_draws_the_2d_maps(trained, tmp_path, capsys):
    out = tmp_path / "codes.npz"
    assert main(["aelab", "embed", f"--workdir={trained}", "--split=val", f"--out={out}"]) == 0
    run = train.build(tiny_config(**{"model.latent_dim": 2, "train.num_steps": 60}))
    with np.load(out) as f:
        assert f["codes"].shape == (len(run.dataset.val), 2)
        np.testing.assert_array_equal(f["labels"], run.dataset.val.labels)
        assert str(f["split"]) == "val" and int(f["step"]) == 60
    assert (trained / "uses" / "latent_2d.png").exists() and (trained / "uses" / "manifold.png").exists()


def test_probe_reports_codes_pca_and_pixels(trained):
    assert main(["aelab", "probe", f"--workdir={trained}", "--probe_examples=500"]) == 0
    report = json.loads((trained / "uses" / "representation.json").read_text())
    # Ten digit classes: chance is 0.1. Pixels separate digits well (~0.96), two principal
    # components partly (~0.58), and a 2-D code after 60 steps weakly (~0.3, ~0.25).
    for features, floor in (("codes", 0.2), ("pca_2", 0.45), ("pixels", 0.9)):
        for metric in ("linear_probe_accuracy", "knn_accuracy"):
            assert floor < report[features][metric] <= 1.0, (features, metric)
    assert report["train_examples"] == 500


def test_probe_scores_by_hand():
    """Features that are the labels give accuracy 1; features that carry no label give chance."""
    from aelab.uses.codes import probe_scores

    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, 400), rng.integers(0, 4, 200)
    one_hot = lambda y: np.eye(4)[y] + 0.01 * rng.normal(size=(len(y), 4))  # noqa: E731
    assert probe_scores(one_hot(y_train), y_train, one_hot(y_test), y_test) == {
        "linear_probe_accuracy": 1.0, "knn_accuracy": 1.0}
    noise = probe_scores(rng.normal(size=(400, 4)), y_train, rng.normal(size=(200, 4)), y_test)
    assert all(0.1 < v < 0.4 for v in noise.values()), noise


def test_denoise_reports_psnr_and_ssim_per_level(trained):
    assert main(["aelab", "denoise", f"--workdir={trained}", "--noise=gaussian:0.2,0.4",
                 "--noise=salt_and_pepper:0.1"]) == 0
    report = json.loads((trained / "uses" / "denoise.json").read_text())
    assert [(r["noise"], r["level"]) for r in report["results"]] == [
        ("gaussian", 0.2), ("gaussian", 0.4), ("salt_and_pepper", 0.1)]
    gaussian = report["results"][:2]
    assert gaussian[0]["psnr_noisy"] > gaussian[1]["psnr_noisy"]  # more noise, lower PSNR
    assert all(-1 <= r["ssim_noisy"] <= 1 and r["psnr_gain_db"] == pytest.approx(
        r["psnr_denoised"] - r["psnr_noisy"]) for r in report["results"])
    assert (trained / "uses" / "denoise.png").exists()


def test_anomaly_detection_one_class(one_class):
    assert main(["aelab", "anomaly", f"--workdir={one_class}"]) == 0
    report = json.loads((one_class / "uses" / "anomaly.json").read_text())
    assert report["normal_classes"] == [0] and report["score"] == "loss"
    assert report["auroc"] > 0.8 and report["baselines"]["pca"]["auroc"] > 0.5
    assert report["val_fpr"] <= report["target_fpr"]
    assert 0 <= report["test_precision"] <= 1 and 0 <= report["test_recall"] <= 1
    assert report["test_normal"] + report["test_anomalous"] == 359
    assert (one_class / "uses" / "anomaly_scores.png").exists()
    # Validation AUROC, for choosing a score without test: the normal validation examples (those
    # that set the threshold) plus the other classes' validation examples, none from test.
    run = train.load_trained(str(one_class))[0]
    every_class = train.build(tiny_config(**{"train.num_steps": 1})).dataset.val
    assert report["val_normal"] == len(run.dataset.val) == int((every_class.labels == 0).sum())
    assert report["val_normal"] + report["val_anomalous"] == len(every_class)
    assert set(report["val_auroc_by_score"]) == set(report["auroc_by_score"])
    assert "psnr" not in report["auroc_by_score"]  # a similarity, not an anomaly score
    assert report["val_auroc_by_score"]["loss"] > 0.8


def test_one_class_table_chooses_the_score_on_validation_and_reads_test_for_it_only():
    # "l1" is better on test but worse on validation: the validation choice is "mse".
    def row(cls, seed, val_mse, val_l1, test_mse, test_l1):
        return {"class": cls, "seed": seed, "val_auroc_by_score": {"mse": val_mse, "l1": val_l1},
                "auroc_by_score": {"mse": test_mse, "l1": test_l1}, "pca_auroc": 0.5}

    rows = [row(0, 0, 0.9, 0.8, 0.70, 0.99), row(1, 0, 0.7, 0.6, 0.60, 0.99),
            row(0, 1, 0.9, 0.8, 0.80, 0.99), row(1, 1, 0.7, 0.6, 0.70, 0.99)]
    table = one_class_table(rows)
    assert table["chosen_score"] == "mse"
    assert table["val_mean_auroc_by_score"] == pytest.approx({"mse": 0.8, "l1": 0.7})
    # seed means 65 and 75 (percent): mean 70, sample standard deviation 7.07
    assert table["test_mean_auroc"] == pytest.approx(70.0)
    assert table["test_std_auroc"] == pytest.approx(50 ** 0.5)
    assert table["val_mean_auroc"] == pytest.approx(80.0)
    assert table["test_auroc_by_class"] == pytest.approx({0: 75.0, 1: 65.0})
    assert table["pca_mean_auroc"] == pytest.approx(50.0) and table["seeds"] == [0, 1]


@pytest.mark.parametrize("argv,message", [
    (["embed", "--split=holdout", "--out=x.npz"], "unknown split 'holdout'"),
    (["embed"], "--out is required; usage: aelab embed --workdir=DIR --out=codes.npz"),
    (["denoise", "--noise=gaussian"], "noise 'gaussian' has no level"),
    (["denoise", "--noise=gaussian:loud"], "is not KIND:LEVEL"),
    (["denoise", "--noise=blur:0.3"], "unknown corruption.kind 'blur'"),
    (["anomaly"], "needs the one-class protocol"),
])
def test_bad_use_arguments(trained, tmp_path, capsys, argv, message):
    assert main(["aelab", argv[0], f"--workdir={trained}", *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_workdir_without_a_checkpoint(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(tiny_config().to_dict()))
    assert main(["aelab", "probe", f"--workdir={tmp_path}"]) == 2
    assert "no checkpoints yet; train first" in capsys.readouterr().err


def test_normal_classes_filter_train_and_val_only():
    run = train.build(tiny_config(**{"data.normal_classes": (1, 7)}))
    assert set(run.dataset.train.labels) == {1, 7} and set(run.dataset.val.labels) == {1, 7}
    assert len(set(run.dataset.test.labels)) == 10


@pytest.mark.parametrize("latent,expected", [(1, ["latent_1d.png"]), (5, ["latent_pca.png", "latent_tsne.png"])])
def test_latent_maps_for_other_code_sizes(tmp_path, latent, expected):
    from aelab.uses.codes import latent_maps

    codes = np.random.default_rng(0).normal(size=(200, latent))
    paths = latent_maps(None, codes, np.arange(200) % 10, str(tmp_path), seed=0, policy=None)
    assert [p.split("/")[-1] for p in paths] == expected
    assert all((tmp_path / name).exists() for name in expected)


@pytest.mark.parametrize("use", ["translate", "caption"])
def test_decoding_uses_refuse_a_beam_size_below_one_before_loading_anything(tmp_path, use):
    from aelab.uses.caption import caption
    from aelab.uses.translate import translate

    run = {"translate": translate, "caption": caption}[use]
    with pytest.raises(UsageError, match=r"^--beam_size=0 must be >= 1 \(1 = greedy\)$"):
        run(str(tmp_path / "no_run"), str(tmp_path / "no_input"), str(tmp_path / "out"), beam_size=0)
    assert not (tmp_path / "out").exists()


def test_aelab_load_gives_the_model_without_its_data(tmp_path, monkeypatch):
    """`aelab.load(workdir)`: encode and decode arrays in memory; the data set is never read."""
    import aelab
    import jax.numpy as jnp
    from aelab import data, train
    from aelab.errors import UsageError
    from conftest import tiny_config

    train.train_and_evaluate(tiny_config(), str(tmp_path))
    images = data.load(tiny_config().data).test.images[:5]

    def no_data(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(data, "load", no_data)
    run = aelab.load(str(tmp_path))
    assert run.step == 40 and run.config.task == "autoencoder" and run.example_shape == (8, 8, 1)
    codes = run.encode(images)
    assert codes.shape == (5, 4)
    np.testing.assert_allclose(codes, run.model.encode(jnp.asarray(images)), rtol=1e-5, atol=1e-6)
    assert run.decode(codes).shape == (5, 8, 8, 1) and run.reconstruct(images).shape == (5, 8, 8, 1)
    with pytest.raises(UsageError, match="has no prior to sample"):
        run.sample(3)
    with pytest.raises(UsageError, match="has no translator"):
        run.translate(["hola"])
    monkeypatch.undo()
    (tmp_path / "model.json").unlink()  # a run of an older version: rebuilt from its data
    np.testing.assert_allclose(aelab.load(str(tmp_path)).encode(images), codes, rtol=1e-6)
