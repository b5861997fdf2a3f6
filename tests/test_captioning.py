"""Image captioning: the digit-scene captions are true, scoring, data readers, a tiny model learns,
`aelab caption`, and clear errors."""

import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
import tensorflow_datasets as tfds
from PIL import Image

from aelab import data
from aelab.config import base_config
from aelab.data.captions import Captions, make_digit_captions
from aelab.data.lazy import LazyImages
from aelab.data.sources import read_digits
from aelab.errors import UsageError
from aelab.tasks.captioning import caption_scores, pick_reference
from aelab.text.tokenizer import PAD
from conftest import REPO, tiny_config

# --- the generated captions are true of their images -----------------------------

NAMES = {"en": "zero one two three four five six seven eight nine".split(),
         "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split()}
# An independent reader of the captions: places, relations and empty cells, per language.
WORD = r"(\w+)"
GRAMMAR = {
    "en": {
        "placed": [rf"(?:a|an) {WORD} in the (top|bottom) (left|right)",
                   rf"the (top|bottom) (left|right) holds (?:a|an) {WORD}"],
        "relation": rf"^(?:a|an) {WORD} (to the left of|to the right of|above|below|"
                    rf"above and to the left of|above and to the right of|"
                    rf"below and to the left of|below and to the right of) (?:a|an) {WORD}$",
        "empty": r"the (top|bottom) (left|right) is empty",
        "rows": {"top": 0, "bottom": 1}, "columns": {"left": 0, "right": 1},
        "relations": {"to the left of": (0, -1), "to the right of": (0, 1), "above": (-1, 0),
                      "below": (1, 0), "above and to the left of": (-1, -1),
                      "above and to the right of": (-1, 1), "below and to the left of": (1, -1),
                      "below and to the right of": (1, 1)},
    },
    "es": {
        "placed": [rf"un {WORD} (arriba|abajo) a la (izquierda|derecha)",
                   rf"(arriba|abajo) a la (izquierda|derecha) hay un {WORD}"],
        "relation": rf"^un {WORD} (a la izquierda de|a la derecha de|encima de|debajo de|"
                    rf"encima y a la izquierda de|encima y a la derecha de|"
                    rf"debajo y a la izquierda de|debajo y a la derecha de) un {WORD}$",
        "empty": r"(arriba|abajo) a la (izquierda|derecha) no hay nada",
        "rows": {"arriba": 0, "abajo": 1}, "columns": {"izquierda": 0, "derecha": 1},
        "relations": {"a la izquierda de": (0, -1), "a la derecha de": (0, 1), "encima de": (-1, 0),
                      "debajo de": (1, 0), "encima y a la izquierda de": (-1, -1),
                      "encima y a la derecha de": (-1, 1), "debajo y a la izquierda de": (1, -1),
                      "debajo y a la derecha de": (1, 1)},
    },
}


def digit_in_cell(image, digits, row, column):
    """The label of the digit drawn in cell (row, column), found by exact pixel match; None if empty."""
    cell, size = image.shape[0] // 2, digits.images.shape[1]
    crop = image[row * cell:(row + 1) * cell, column * cell:(column + 1) * cell, 0]
    if not crop.any():
        return None
    for dy in range(cell - size + 1):
        for dx in range(cell - size + 1):
            window = crop[dy:dy + size, dx:dx + size]
            if np.isclose(window.sum(), crop.sum()):  # all the ink is in this window
                match = np.flatnonzero(np.all(digits.images[..., 0] == window, axis=(1, 2)))
                if len(match):
                    return {int(digits.labels[k]) for k in match}
    raise AssertionError("a cell holds ink that is no digit of the set")


def check_caption(caption, truth, language):
    """Asserts that `caption` is true of the scene `truth` {(row, column): set of possible labels}."""
    g, names = GRAMMAR[language], NAMES[language]
    place = lambda a, b: (g["rows"][a], g["columns"][b])  # noqa: E731
    relation = re.match(g["relation"], caption)
    if relation:
        first, words, second = relation.groups()
        assert len(truth) == 2, caption
        (ca, la), (cb, lb) = sorted(truth.items())
        dy, dx = g["relations"][words]
        # The first digit sits (dy, dx) from the second: sign of the offset per axis.
        options = [(c1, l1, c2, l2) for c1, l1, c2, l2 in ((ca, la, cb, lb), (cb, lb, ca, la))
                   if names.index(first) in l1 and names.index(second) in l2]
        assert any(np.sign(c2[0] - c1[0]) == -dy and np.sign(c2[1] - c1[1]) == -dx
                   for c1, _, c2, _ in options), (caption, truth)
        return
    named = {}
    for pattern in g["placed"]:
        for groups in re.findall(pattern, caption):
            word = groups[0] if pattern.startswith(("(?:a|an)", "un")) else groups[2]
            cell = place(*groups[1:]) if pattern.startswith(("(?:a|an)", "un")) else place(*groups[:2])
            named[cell] = names.index(word)
    for a, b in re.findall(g["empty"], caption):
        assert place(a, b) not in truth, caption
    assert set(named) == set(truth), (caption, truth)  # every digit named, none invented
    for cell, label in named.items():
        assert label in truth[cell], (caption, truth)


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_generated_caption_is_true_of_its_image(language):
    digits = read_digits()["train"].take(np.arange(300))
    captions, layouts = make_digit_captions(digits, 120, 20, 1, 3, language, seed=3)
    counts = set()
    for image, references, layout in zip(captions.images, captions.references, layouts):
        truth = {(r, c): digit_in_cell(image, digits, r, c) for r in (0, 1) for c in (0, 1)}
        truth = {cell: labels for cell, labels in truth.items() if labels is not None}
        assert set(truth) == set(layout)  # what the generator says it drew is what the image shows
        counts.add(len(truth))
        assert len(references) == 3 and len(set(references)) == 3
        for caption in references:
            check_caption(caption, truth, language)
    assert counts == {1, 2, 3}


def test_caption_grammar_articles_and_arrangement_words():
    digits = read_digits()["train"]
    captions, _ = make_digit_captions(digits, 400, 20, 2, 2, "en", seed=0)
    text = " ".join(r for refs in captions.references for r in refs)
    assert "an eight" in text and "a eight" not in text and "a seven" in text
    assert "to the left of" in text and "above" in text and "above and to the" in text


# --- scoring ----------------------------------------------------------------------

def test_caption_scores_use_every_reference():
    references = [("a seven in the top left", "there is a seven in the top left"),
                  ("a two above a zero", "a zero below a two", "a two in the top left and a zero in the bottom left")]
    # Each hypothesis equals a different reference of its image: a perfect score.
    perfect = caption_scores(["there is a seven in the top left", "a zero below a two"], references)
    assert perfect == {"bleu": pytest.approx(100.0), "exact_match": 1.0}
    # Case and spacing do not count against exact match (BLEU is case-sensitive, as sacreBLEU).
    assert caption_scores(["A Seven  in the top left", "a zero"], references)["exact_match"] == 0.5
    hypotheses = ["a seven in the top right", "a two above a one"]
    scores = caption_scores(hypotheses, references)
    # Fewer references for an image repeat its first one: the same BLEU as sacreBLEU on those streams.
    streams = [["a seven in the top left", "a two above a zero"],
               ["there is a seven in the top left", "a zero below a two"],
               ["a seven in the top left", "a two in the top left and a zero in the bottom left"]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, streams).score)
    assert scores["exact_match"] == 0.0
    # More references can only help: against the first references alone the score is lower.
    first_only = sacrebleu.corpus_bleu(hypotheses, [[r[0] for r in references]]).score
    assert scores["bleu"] >= first_only


def test_training_picks_a_real_reference_uniformly():
    targets = np.zeros((2, 3, 4), np.int32)
    targets[0, 0] = [5, 3, 0, 0]  # one reference
    targets[1, :2] = [[6, 3, 0, 0], [7, 3, 0, 0]]  # two references, then an all-PAD row
    picks = np.stack([np.asarray(pick_reference(jnp.asarray(targets), jax.random.key(i)))
                      for i in range(400)])
    assert (picks[:, 0, 0] == 5).all()
    firsts = picks[:, 1, 0]
    assert set(firsts.tolist()) == {6, 7} and PAD not in firsts
    assert 0.4 < (firsts == 6).mean() < 0.6


# --- data readers ------------------------------------------------------------------

def write_png(path, seed, size=(12, 10)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def flickr_folder(tmp_path, names=("a.png", "b.png", "c.png", "d.png", "e.png", "f.png")):
    (tmp_path / "images").mkdir()
    lines = []
    for i, name in enumerate(names):
        write_png(tmp_path / "images" / name, i)
        lines += [f"{name}#0\tA dog number {i} runs .", f"{name}#1\tA brown dog runs fast ."]
    (tmp_path / "captions.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_captions_folder_in_flickr8k_format(tmp_path):
    folder = flickr_folder(tmp_path)
    (folder / "Flickr_8k.trainImages.txt").write_text("a.png\nb.png\nc.png\n")
    (folder / "Flickr_8k.devImages.txt").write_text("d.png\n")
    (folder / "Flickr_8k.testImages.txt").write_text("e.png\nf.png\n")
    config = base_config()
    config.data.name, config.data.image_size = f"captions:{folder}", 16
    dataset = data.load(config.data)
    assert isinstance(dataset.train, Captions)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (3, 1, 2)
    assert dataset.test.images.shape == (2, 16, 16, 3)
    assert dataset.test.references[0] == ("A dog number 4 runs .", "A brown dog runs fast .")


def flickr8k_release(root, train=6, dev=2, test=2, unlisted=2):
    """A folder laid out as the Flickr8k release is once unpacked: JPEGs in Flicker8k_Dataset/,
    Flickr8k.token.txt beside Flickr8k.lemma.token.txt, the three split lists and the other text
    files, with the release's oddities: a captioned image that has no file and is in no list
    (`2258277193_586949ec62.jpg.1`), images captioned but in no list, CRLF line ends, a blank
    last line, spaces around captions."""
    images = root / "Flicker8k_Dataset"
    images.mkdir(parents=True)
    names = [f"{1000 + i}_{i:04x}ab.jpg" for i in range(train + dev + test + unlisted)]
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(images / name, quality=90)
    token, lemma = [], []
    for i, name in enumerate(names + ["2258277193_586949ec62.jpg.1"]):
        for k in range(5):
            token.append(f"{name}#{k}\tA dog number {i} runs in the grass {k} . ")
            lemma.append(f"{name}#{k}\ta dog number {i} run in the grass {k} .")
    (root / "Flickr8k.token.txt").write_bytes(("\r\n".join(token) + "\r\n\r\n").encode())
    (root / "Flickr8k.lemma.token.txt").write_text("\n".join(lemma) + "\n")
    for stem, part in (("train", names[:train]), ("dev", names[train:train + dev]),
                       ("test", names[train + dev:train + dev + test])):
        (root / f"Flickr_8k.{stem}Images.txt").write_text("\n".join(part) + "\n")
    (root / "ExpertAnnotations.txt").write_text(f"{names[0]}\t{names[0]}#2\t1\t1\t1\n")
    (root / "readme.txt").write_text("Flickr8k text files\n")
    return root, names


def test_a_flickr8k_release_folder_reads_as_released(tmp_path):
    folder, names = flickr8k_release(tmp_path / "Flickr8k")
    config = base_config("captioning")
    config.data.name, config.data.image_size = f"captions:{folder}", 16
    dataset = data.load(config.data)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (6, 2, 2)
    assert dataset.info["captioned_images_in_no_split"] == 3  # 2 unlisted images and the .jpg.1 entry
    assert dataset.test.images.shape == (2, 16, 16, 3)
    # Token file order, stripped: the captions, not the lemmas, and no CR left.
    assert dataset.test.references[0] == tuple(f"A dog number 8 runs in the grass {k} ." for k in range(5))
    assert dataset.val.references[1][0] == "A dog number 7 runs in the grass 0 ."


def test_a_captions_folder_streams_with_the_in_memory_pixels(tmp_path):
    folder, _ = flickr8k_release(tmp_path / "Flickr8k")
    config = base_config("captioning")
    config.data.name, config.data.image_size = f"captions:{folder}", 16
    streamed, in_memory = data.load(config.data, stream_above_mb=0), data.load(config.data)
    assert streamed.info["input"] == "streamed" and isinstance(streamed.train.images, LazyImages)
    assert in_memory.info["input"] == "in memory" and isinstance(in_memory.train.images, np.ndarray)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(streamed.split(name).images), in_memory.split(name).images)
        assert list(streamed.split(name).references) == list(in_memory.split(name).references)


def test_the_nearest_neighbour_baseline_reads_training_images_in_chunks(monkeypatch):
    """The retrieval baseline finds sklearn's nearest neighbours, whether the training images are
    one array or a streamed split read a few rows at a time."""
    from sklearn.neighbors import NearestNeighbors

    from aelab.data import lazy
    from aelab.tasks.captioning import nearest_rows

    rng = np.random.default_rng(0)
    train_images, test_images = rng.random((50, 4, 4, 3), np.float32), rng.random((9, 4, 4, 3), np.float32)
    expected = NearestNeighbors(n_neighbors=1).fit(train_images.reshape(50, -1)).kneighbors(
        test_images.reshape(9, -1), return_distance=False)[:, 0]
    np.testing.assert_array_equal(nearest_rows(train_images, test_images), expected)
    monkeypatch.setattr(lazy, "CHUNK_MB", 7 * 48 * 4 / 2 ** 20)  # 7 rows a chunk
    streamed = LazyImages(lambda i: train_images[i], (4, 4, 3), 50, str)
    np.testing.assert_array_equal(nearest_rows(streamed, test_images), expected)


def test_caption_naming_a_missing_image_is_a_clear_error(tmp_path):
    folder = flickr_folder(tmp_path)
    with open(folder / "captions.txt", "a") as f:
        f.write("ghost.jpg#0\tA ghost .\n")
    config = base_config()
    config.data.name = f"captions:{folder}"
    with pytest.raises(UsageError, match=r"missing from .*images, first 'ghost.jpg'"):
        data.load(config.data)


def test_unreadable_image_is_a_clear_error(tmp_path):
    folder = flickr_folder(tmp_path)
    (folder / "images" / "c.png").write_bytes(b"not a png at all")
    config = base_config()
    config.data.name = f"captions:{folder}"
    with pytest.raises(UsageError, match=r"c\.png: cannot read image"):
        data.load(config.data)


def test_malformed_caption_line_names_the_line(tmp_path):
    folder = flickr_folder(tmp_path)
    with open(folder / "captions.txt", "a") as f:
        f.write("a.png#2 no tab here\n")
    config = base_config()
    config.data.name = f"captions:{folder}"
    with pytest.raises(UsageError, match=r"captions.txt line 13: expected `image.jpg#i<TAB>caption`"):
        data.load(config.data)


def test_tfds_captioning_set_on_mock_data():
    """COCO's feature layout (image, captions/text), served by TFDS's mock under a builder that
    needs no TensorFlow; coco_captions' own builder needs TensorFlow and says so."""
    def examples(self, *args, **kwargs):
        rng = np.random.default_rng(0)
        return [{"image": rng.integers(0, 256, (20 + i % 3, 24, 3), dtype=np.uint8),
                 "captions": {"text": np.array([f"a photo {i}".encode(), b"a thing"]), "id": np.arange(2)},
                 "image/id": i} for i in range(30)]

    config = base_config()
    config.data.name, config.data.captions_key, config.data.image_size = "mnist", "captions", 16
    with tfds.testing.mock_data(num_examples=30, as_data_source_fn=examples):
        dataset = data.load(config.data)
    assert isinstance(dataset.train, Captions) and dataset.train.images.shape[1:] == (16, 16, 3)
    assert all(refs[1] == "a thing" and refs[0].startswith("a photo") for refs in dataset.test.references)
    config.data.captions_key = "sentences"
    with tfds.testing.mock_data(num_examples=30, as_data_source_fn=examples):
        with pytest.raises(UsageError, match="'sentences/text'"):
            data.load(config.data)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        config.data.name = "coco_captions"
        with tfds.testing.mock_data(num_examples=30, as_data_source_fn=examples):
            with pytest.raises(UsageError, match="tfds:coco_captions: this data set's TFDS builder needs TensorFlow"):
                data.load(config.data)


def test_digit_captions_check_their_settings():
    digits = read_digits()["train"]
    with pytest.raises(UsageError, match="language='fr'"):
        make_digit_captions(digits, 4, 20, 1, 3, "fr", 0)
    with pytest.raises(UsageError, match="canvas=12 is too small"):
        make_digit_captions(digits, 4, 12, 1, 3, "en", 0)
    with pytest.raises(UsageError, match="max_digits=4"):
        make_digit_captions(digits, 4, 20, 1, 4, "en", 0)


# --- a tiny model learns, and `aelab caption` uses it ----------------------------------------

def tiny_caption_config(**overrides):
    config = tiny_config(**{
        "task": "captioning", "loss": "cross_entropy", "data.name": "digitcaptions:digits",
        "data.scenes.canvas": 16, "data.scenes.min_digits": 1, "data.scenes.max_digits": 1,
        "data.scenes.num_train": 1500, "data.scenes.num_test": 200,
        "model.arch": "transformer", "model.channels": (16, 32), "model.transformer.embed_dim": 48,
        "model.transformer.num_heads": 4, "model.transformer.num_layers": 1, "model.transformer.mlp_dim": 96,
        "model.transformer.dropout": 0.0,
        "text.tokenizer": "bpe", "text.vocab_size": 40, "text.max_length": 12, "text.buckets": (),
        "text.label_smoothing": 0.0, "optimizer.learning_rate": 3e-3, "train.num_steps": 600,
        "train.batch_size": 32, "train.eval_every": 300, "train.checkpoint_every": 300,
        "train.log_every": 100, "decode.beam_size": 2, "decode.eval_examples": 50})
    for key, value in overrides.items():
        config[key.split(".")[0]][key.split(".")[1]] = value
    return config


@pytest.fixture(scope="module")
def trained_captioner(tmp_path_factory):
    from aelab.train import train_and_evaluate as train

    workdir = tmp_path_factory.mktemp("captioner")
    summary = train(tiny_caption_config(), str(workdir))
    return workdir, summary


@pytest.mark.slow
def test_tiny_captioner_learns(trained_captioner):
    workdir, summary = trained_captioner
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_nll = [r["nll"] for r in records if r["split"] == "train"]
    assert train_nll[-1] < 0.3 * train_nll[0]
    ev = summary["eval"]
    # (Test scenes are made of digits held out from the embedded set's training scenes.)
    assert ev["exact_match"] > 0.8 and ev["bleu"] > 80
    assert set(summary["baselines"]["nearest_neighbour"]) == {"bleu", "exact_match"}
    assert (workdir / "figures" / "captions.png").exists()
    assert "model\t" in (workdir / "samples" / f"test_{summary['step']}.txt").read_text()


@pytest.mark.slow
def test_caption_command_prints_captions_and_refuses_bad_images(trained_captioner, tmp_path):
    workdir, _ = trained_captioner
    digits = read_digits()["train"]
    scenes, layouts = make_digit_captions(digits, 3, 16, 1, 1, "en", seed=9)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, image in enumerate(scenes.images):
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).resize((32, 32)).save(folder / f"s{i}.png")
    command = [sys.executable, "-m", "aelab.main", "caption", f"--workdir={workdir}", f"--input={folder}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["s0.png", "s1.png", "s2.png"]
    assert all(len(line.split("\t")[1].split()) >= 3 for line in lines)
    (folder / "s3.png").write_bytes(b"garbage")
    out = tmp_path / "captions.txt"
    bad = subprocess.run(command + [f"--out={out}"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "s3.png: cannot read image" in bad.stderr
    assert not out.exists()


@pytest.mark.slow
def test_caption_reads_no_data(trained_captioner, tmp_path, monkeypatch):
    """The captioner comes back from its workdir alone (config, model.json, tokenizer, checkpoint)."""
    from aelab import data
    from aelab.uses import caption

    workdir, _ = trained_captioner
    image = np.zeros((20, 20), np.uint8)
    image[5:15, 8:12] = 255
    Image.fromarray(image).save(tmp_path / "one.png")
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("caption read the training data"))
    out = tmp_path / "caption.txt"
    assert caption.caption(str(workdir), str(tmp_path / "one.png"), str(out), 1) == [str(out)]
    assert out.read_text().startswith("one.png\t")


@pytest.mark.slow
def test_translate_refuses_a_captioning_run(trained_captioner, tmp_path):
    """Regression: captioning's task class extends translation's, so a class check let
    `aelab translate` load a captioning run; the task name is what is checked."""
    from aelab.uses.translate import translate

    workdir, _ = trained_captioner
    (tmp_path / "in.txt").write_text("hola\n")
    with pytest.raises(UsageError, match="translate needs a translation run, but this one trained task='captioning'"):
        translate(str(workdir), str(tmp_path / "in.txt"), str(tmp_path / "out.txt"))
    assert not (tmp_path / "out.txt").exists()


def test_caption_command_refuses_a_translation_or_autoencoder_run(tmp_path):
    from aelab.train import train_and_evaluate as train
    from aelab.uses.caption import caption

    train(tiny_config(**{"train.num_steps": 2, "train.eval_every": 2, "train.checkpoint_every": 2}),
          str(tmp_path / "ae"))
    write_png(tmp_path / "x.png", 0)
    with pytest.raises(UsageError, match="caption needs a captioning run, but this one trained task='autoencoder'"):
        caption(str(tmp_path / "ae"), str(tmp_path / "x.png"), None)


def test_captioning_refuses_data_without_captions():
    from aelab.train import build

    with pytest.raises(UsageError, match="task=captioning needs captioned images, but digits holds none"):
        build(tiny_caption_config(**{"data.name": "digits"}))
