"""README's result rows, generated from the experiments' results.json files.

    python experiments/tables.py          # prints each row's result and baseline cells

Each entry of ROWS names a README result row (its first cell), the results
file behind it and how its cells are written from that file. tests/test_results.py
fails when a README row differs from what this prints, and lists the rows
whose figure has no results file yet (PENDING, marked † in README).
"""

from __future__ import annotations

import json
import pathlib

EXPERIMENTS = pathlib.Path(__file__).resolve().parent


def _pm(figure: dict, digits: int, scale: float = 1.0) -> str:
    """"mean ± std" of an over_seeds figure."""
    return f"{scale * figure['mean']:.{digits}f} ± {scale * figure['std']:.{digits}f}"


def _figure(value, digits: int) -> str:
    """A one-run number, or "mean ± std" of an over_seeds figure."""
    return _pm(value, digits) if isinstance(value, dict) else f"{value:.{digits}f}"


def _translation(r):
    return (f"sacreBLEU **{_figure(r['test']['bleu'], 1)}** (chrF {_figure(r['test']['chrf'], 1)}; validation, "
            f"greedy, {_figure(r['val']['bleu'], 1)})", f"copy source {r['copy_source_bleu']:.1f}")


def _isbi(r):
    return (f"pixel accuracy **{r['test']['pixel_accuracy']:.3f}**, mean IoU {r['test']['mean_iou']:.3f} "
            f"(validation {r['val']['pixel_accuracy']:.3f}, {r['val']['mean_iou']:.3f})",
            f"majority {r['majority']['pixel_accuracy']:.3f}, {r['majority']['mean_iou']:.3f}")


def _scenes(r):
    return (f"mean IoU **{_figure(r['test']['mean_iou'], 3)}** (validation {_figure(r['val']['mean_iou'], 3)})",
            f"majority {r['majority']['mean_iou']:.3f}")


def _captioning(r):
    test, val, nearest = r["test"], r["val"], r["nearest_neighbour"]
    return (f"BLEU-4 **{test['bleu']:.1f}**, exact match **{100 * test['exact_match']:.1f}%** (validation, greedy, "
            f"{val['bleu']:.1f}, {100 * val['exact_match']:.1f}%)",
            f"nearest neighbour {nearest['bleu']:.1f} / {100 * nearest['exact_match']:.1f}%")


def _latent_sweep(r):
    by_size = {int(size): row for size, row in r["by_size"].items()}
    below = sum(row["test"]["recon_sse"]["mean"] < row["pca_recon_sse"] for row in by_size.values())
    ends = "; ".join(f"d={d}: {_pm(by_size[d]['test']['recon_sse'], 2)} vs {by_size[d]['pca_recon_sse']:.2f}"
                     for d in (min(by_size), max(by_size)))
    return (f"test recon_sse below PCA at **{below} of {len(by_size)}** sizes ({ends})", "PCA at each size")


def _digits_ae(r):
    return (f"recon_sse {_pm(r['test']['recon_sse'], 3)} (validation {_pm(r['val']['recon_sse'], 3)})",
            f"PCA-8 {r['pca']:.3f}")


def _mnist_ae(r):
    return (f"recon_sse **{_pm(r['test']['recon_sse'], 2)}** (validation {_pm(r['val']['recon_sse'], 2)}; "
            f"paper 3.00)", f"PCA-30 {r['pca']:.2f}")


def _probe(r):
    return (f"**{_pm(r['codes']['linear_probe_accuracy'], 1, 100)}%** "
            f"(5-NN {_pm(r['codes']['knn_accuracy'], 1, 100)}%)",
            f"PCA-30 {100 * r['pca_30']['linear_probe_accuracy']:.1f}%; "
            f"pixels {100 * r['pixels']['linear_probe_accuracy']:.1f}%")


def _hinton(r):
    return (f"recon_sse **{r['test_mean']:.3f} ± {r['test_std']:.3f}** (validation {r['val_mean']:.3f} "
            f"± {r['val_std']:.3f}; variant chosen on validation)", f"PCA-30 {r['pca']:.2f}")


def _one_class(r):
    """MNIST's 3 seeds show their spread; a one-seed run says so. DCAE where the file has it (CIFAR-10)."""
    one_seed = len(r["seeds"]) == 1
    spread = "" if one_seed else f" ± {r['test_std_auroc']:.1f}"
    dcae = f", DCAE (published) {r['dcae_mean_auroc']:.1f}" if "dcae_mean_auroc" in r else ""
    return (f"**{r['test_mean_auroc']:.1f}{spread}** (validation {r['val_mean_auroc']:.1f}; score "
            f"`{r['chosen_score']}` chosen on validation{'; 1 seed' if one_seed else ''})",
            f"PCA {r['pca_mean_auroc']:.1f}; Deep SVDD (published) {r['deep_svdd_mean_auroc']:.1f}{dcae}")


def _disentangle(r):
    def scores(name, bold=""):  # MIG (DCI disentanglement)
        run = r["objectives"][name]
        return f"{bold}{_pm(run['mig'], 3)}{bold} (DCI disentanglement {_pm(run['disentanglement'], 2)})"

    return f"beta-TCVAE MIG {scores('beta_tcvae', '**')}", f"VAE {scores('vae')}; beta-VAE {scores('beta_vae')}"


def _vae(r):
    test = r["test"]
    return (f"neg_elbo **{_figure(test['neg_elbo'], 2)}**, IWAE nll (k=1000) **{_figure(test['nll'], 2)}** "
            f"(validation neg_elbo {_figure(r['val']['neg_elbo'], 2)})",
            f"recon_sse {_figure(test['recon_sse'], 1)} vs PCA-20 {r['pca']['recon_sse']:.1f}")


def _hvae(rows):
    top, iwae, elbo = rows["hvae_iwae"], rows["vae_iwae"], rows["vae_elbo"]
    return (f"IWAE nll (k=1000) **{top['test']['nll']:.2f}** (neg_elbo {top['test']['neg_elbo']:.2f}, validation "
            f"{top['val']['neg_elbo']:.2f}; {top['training_seconds'] / 60:.0f} min of training)",
            f"one layer, IWAE-trained {iwae['test']['nll']:.2f}, ELBO-trained {elbo['test']['nll']:.2f}")


def _cifar10(rows):
    resnet, conv, pca = rows["resnet"], rows["conv"], rows["pca"]
    return (f"**{resnet['test']['bits_per_dim']:.3f} bits/dim** (IWAE k=10 {resnet['test']['nll_bits_per_dim']:.3f}; "
            f"PSNR {resnet['test']['psnr']:.1f} dB; validation {resnet['val']['bits_per_dim']:.3f})",
            f"plain conv VAE {conv['test']['bits_per_dim']:.3f}; PPCA-128 {pca['bits_per_dim']:.3f} "
            f"(PCA PSNR {pca['psnr']:.1f} dB)")


def _dae(r):
    [n] = [n for n in r["noises"] if (n["noise"], n["level"]) == ("gaussian", 0.3)]
    return (f"{n['noisy']['psnr']['mean']:.1f} dB noisy → **{_pm(n['denoising_ae']['psnr'], 1)} dB**",
            f"plain AE {_pm(n['plain_ae']['psnr'], 1)} dB")


def _vq_prior(r):
    prior, vq = r["prior"], r["vqvae"]
    return (f"prior's code NLL **{_pm(prior['test']['bits_per_dim'], 3)} bits/dim** "
            f"({_pm(prior['test']['nll'], 1)} nats per image; validation {_pm(prior['val']['bits_per_dim'], 3)}); "
            f"codebook perplexity {_pm(vq['ema']['test']['perplexity'], 1)} (EMA) vs "
            f"{_pm(vq['codebook_loss']['test']['perplexity'], 1)} (codebook loss)",
            f"codes independent per position {prior['baselines']['position_frequencies']['bits_per_dim']:.3f} "
            f"bits/dim")


# README row (first cell) -> (experiment folder, row of its results.json, cells(row) -> (result
# cell, baseline cell)); row None: cells(rows) of the whole file.
ROWS = {
    "digits autoencoder (quick start)": ("digits_ae", "digits_ae", _digits_ae),
    "MNIST deep autoencoder 784-1000-500-250-30": ("mnist_ae", "mnist_ae", _mnist_ae),
    "linear probe on mnist_ae's 30-d codes": ("mnist_ae", "probe", _probe),
    "MNIST VAE 784-500-500-20, binarized": ("mnist_vae", "mnist_vae", _vae),
    "MNIST hierarchical VAE, 2 stochastic layers, IWAE-trained": ("hvae_mnist", None, _hvae),
    "CIFAR-10 residual conv VAE, 128-d code": ("cifar10", None, _cifar10),
    "denoising, Gaussian sigma 0.3": ("mnist_dae", "mnist_dae", _dae),
    "Hinton & Salakhutdinov 2006, no pretraining": ("hinton2006", "hinton2006", _hinton),
    "one-class anomaly detection, mean AUROC over the 10 MNIST digits": ("anomaly_mnist", "one_class_mnist",
                                                                         _one_class),
    "one-class anomaly detection, mean AUROC over the 10 CIFAR-10 classes": ("anomaly_cifar10",
                                                                             "one_class_cifar10", _one_class),
    "disentanglement on generated shapes (dsprites:small), 10-d code": ("disentangle", "disentangle",
                                                                         _disentangle),
    "Spanish → English, Transformer 2+2": ("translation", "transformer", _translation),
    "Spanish → English, attention GRU": ("translation", "rnn", _translation),
    "ISBI 2012 membranes, U-Net": ("segmentation", "isbi_unet", _isbi),
    "MNIST scenes, 11 classes, U-Net": ("segmentation", "scenes_unet", _scenes),
    "captioning MNIST scenes, Transformer": ("captioning", "captioning", _captioning),
    "latent sweep, MNIST, 2 to 64": ("latent_sweep", "latent_sweep_ae", _latent_sweep),
    "VQ-VAE + Transformer prior over its 15 codes, MNIST": ("vq_mnist", "vq_mnist", _vq_prior),
}

# Rows whose figure predates results.json: rerun pending, marked † in README (none now).
PENDING: tuple[str, ...] = ()


def generated() -> dict[str, tuple[str, str]]:
    """{README row: (result cell, baseline cell)} for every row whose results file exists."""
    out = {}
    for row, (folder, key, cells) in ROWS.items():
        path = EXPERIMENTS / folder / "results.json"
        rows = json.loads(path.read_text())["rows"] if path.exists() else {}
        if key is None and rows:
            out[row] = cells(rows)
        elif key in rows:
            out[row] = cells(rows[key])
    return out


if __name__ == "__main__":
    for row, (result, baseline) in generated().items():
        print(f"{row} | {result} | {baseline}")
