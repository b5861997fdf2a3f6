"""Translation: text data and tokenizer, masks, decoding, losses, a tiny model that learns, CLI."""

import os
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from aelab import compiler, data, train
from aelab.config import base_config, set_value
from aelab.data import TrainBatches
from aelab.data.text import TextPairs, parse_tsv, read_textpairs, tokenize
from aelab.errors import UsageError
from aelab.main import main
from aelab.models.seq2seq import AttentionRNN, ImageEncoder, Transformer
from aelab.tasks.translation import corpus_scores, shift_right, token_losses
from aelab.text import decode, tokenizer as tok
from conftest import SHARED_DATA

SENTENCES = ["¿Dónde está la estación?", "I can't go there, Tom.", "Él tiene 3 gatos.",
             "Ella dijo: «hola».", "Good morning!"]


def models(vocab=40, length=12):
    return [Transformer(vocab, length, 32, 4, 2, 64, rngs=nnx.Rngs(0)),
            Transformer(vocab, length, 32, 4, 1, 64, positions="learned", share_embeddings=False,
                        rngs=nnx.Rngs(1)),
            AttentionRNN(vocab, 16, 32, rngs=nnx.Rngs(2)),
            AttentionRNN(vocab, 16, 32, layers=2, cell="lstm", attention="dot", share_embeddings=False,
                         rngs=nnx.Rngs(3))]


MODEL_IDS = ["transformer", "transformer-learned-separate", "gru-additive", "lstm-dot"]


# Data.
def test_tsv_skips_and_counts_bad_lines():
    text = "Go.\tVe.\n\nno tab here\n\t\nHi.\tHola.\tCC-BY attribution\n  \nWait!\t\n"
    pairs, skipped = parse_tsv(text, "t")
    assert list(pairs.source) == ["Go.", "Hi."] and list(pairs.target) == ["Ve.", "Hola."]
    assert skipped == {"empty_lines": 3, "lines_without_tab": 1, "pairs_with_an_empty_side": 1}
    with pytest.raises(UsageError, match="no `source<TAB>target` line"):
        parse_tsv("just words\n\n", "t")


def test_textpairs_zip_reverse_and_seeded_shuffle(tmp_path):
    lines = "".join(f"en {i}\tes {i}\n" for i in range(50))
    path = tmp_path / "corpus.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("corpus/_about.txt", "notes")
        z.writestr("corpus/pairs.txt", lines + "** Info **\n")
    splits, skipped = read_textpairs(str(path), reverse=True, seed=0)
    pairs = splits["train"]
    assert skipped == {"lines_without_tab": 1}
    assert all(s.replace("es", "en") == t for s, t in zip(pairs.source, pairs.target))  # reversed
    assert list(pairs.source) != [f"es {i}" for i in range(50)]  # shuffled...
    again, _ = read_textpairs(str(path), reverse=True, seed=0)
    assert list(again["train"].source) == list(pairs.source)  # ...the same way every time
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.txt", lines)
        z.writestr("b.tsv", lines)
    with pytest.raises(UsageError, match="exactly one"):
        read_textpairs(str(tmp_path / "two.zip"), False, 0)
    with pytest.raises(UsageError, match="no such file"):
        read_textpairs(str(tmp_path / "missing.tsv"), False, 0)


def test_tokenizer_round_trips_text_and_is_deterministic():
    corpus = SENTENCES * 20 + [f"sentence number {i} with some words" for i in range(200)]
    proto = tok.train(corpus, 60)
    assert proto == tok.train(corpus, 60)
    tokenizer = tok.Tokenizer(proto)
    ids = tokenizer.encode(SENTENCES)
    assert all(row[-1] == tok.EOS and tok.PAD not in row for row in ids)
    assert tokenizer.decode(ids) == SENTENCES
    padded = np.zeros((len(ids), 30), np.int32)
    for i, row in enumerate(ids):
        padded[i, :len(row)] = row
    assert tokenizer.decode(padded) == SENTENCES  # PAD after EOS is ignored
    with pytest.raises(UsageError, match="vocab_size=5000.*<= "):
        tok.train(["a b"], 5000)


def test_over_long_pairs_are_skipped_and_counted():
    tokenizer = tok.Tokenizer(tok.train(SENTENCES * 10, 40))
    pairs = TextPairs(np.array(["Good morning!", "I can't go there, Tom. " * 3], dtype=object),
                      np.array(["Good morning!", "Good morning!"], dtype=object))
    short, long = (len(row) for row in tokenizer.encode(list(pairs.source)))
    assert short < long
    split, skipped = tokenize(pairs, tokenizer, max_length=short)
    assert skipped == 1 and list(split.source_text) == ["Good morning!"]
    assert split.source.shape == (1, short) and split.source.dtype == np.int32


def test_tfds_translation_set_on_mock_data():
    def examples(self, *args, **kwargs):
        return [{"es": f"hola {i}".encode(), "en": f"hello {i}".encode()} for i in range(40)]

    config = base_config()
    config.data.name = "ted_hrlr_translate/pt_to_en"
    config.data.source_key, config.data.target_key = "es", "en"
    with tfds.testing.mock_data(num_examples=40, as_data_source_fn=examples):
        dataset = data.load(config.data)
    assert isinstance(dataset.train, TextPairs)
    assert dataset.test.source[0].startswith("hola") and dataset.test.target[0].startswith("hello")
    config.data.source_key = "pt"
    with tfds.testing.mock_data(num_examples=40, as_data_source_fn=examples):
        with pytest.raises(UsageError, match="source_key='pt'"):
            data.load(config.data)


def test_bucketed_batches_are_pure_functions_of_the_step():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 20, size=200)
    rows = np.zeros((200, 20), np.int32)
    for i, n in enumerate(lengths):
        rows[i, :n] = 5
    from aelab.data.text import TextSplit

    split = TextSplit(rows, rows, rows, rows)
    a, b = TrainBatches(split, 16, seed=3, bucket_lengths=(8, 20)), TrainBatches(split, 16, 3, (8, 20))
    seen = []
    for step in range(a.steps_per_epoch):
        batch = a(step)
        width = batch["source"].shape[1]
        assert width in (8, 20)
        assert (batch["source"][:, width:] if width < 20 else batch["source"][:, :0]).size == 0
        assert ((rows[a.indices(step)] != 0).sum(1) <= width).all()  # nothing cut off
        seen += list(a.indices(step))
    assert len(set(seen)) == len(seen)  # no repeats within an epoch
    for step in (7, 0, 30, 3):
        np.testing.assert_array_equal(a(step)["source"], b(step)["source"])
    with pytest.raises(UsageError, match="last bucket"):
        TrainBatches(split, 16, 3, (4, 8))


# Masks.
@pytest.mark.parametrize("model", models(), ids=MODEL_IDS)
def test_no_attention_to_padding(model):
    source = jnp.array([[5, 6, 7, tok.EOS, 0, 0, 0, 0]])
    target_in = jnp.array([[tok.BOS, 9, 10, 11]])
    longer = model(source, target_in)
    shorter = model(source[:, :4], target_in)
    np.testing.assert_allclose(longer, shorter, atol=1e-5)
    # Padded target keys are not attended to by the real target positions before them.
    padded = model(source, jnp.array([[tok.BOS, 9, 10, 11, 0, 0]]))
    np.testing.assert_allclose(padded[:, :4], longer, atol=1e-5)


@pytest.mark.parametrize("model", models(), ids=MODEL_IDS)
def test_no_peeking_at_future_tokens(model):
    source = jnp.array([[5, 6, 7, tok.EOS], [8, tok.EOS, 0, 0]])
    a = model(source, jnp.array([[tok.BOS, 9, 10, 11, 12], [tok.BOS, 13, 14, 15, 16]]))
    b = model(source, jnp.array([[tok.BOS, 9, 10, 30, 31], [tok.BOS, 13, 14, 32, 33]]))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)  # positions 0..2 saw tokens 0..2 only
    assert not np.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("model", models(), ids=MODEL_IDS)
def test_cached_decode_steps_equal_the_teacher_forced_pass(model):
    source = jnp.array([[5, 6, 7, tok.EOS], [8, 9, tok.EOS, 0]])
    target_in = jnp.array([[tok.BOS, 9, 10, 11, 12], [tok.BOS, 13, 14, 15, 16]])
    full = model(source, target_in)
    memory = model.encode(source)
    cache = model.init_cache(memory, 12)
    buffer = jnp.zeros((2, 12), jnp.int32).at[:, :5].set(target_in)
    for t in range(5):
        logits, cache = model.decode_step(memory, cache, buffer, t)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-4)


def image_models(vocab=40, length=12, shape=(8, 8, 1)):
    """Captioning's two architectures, on images."""
    return [Transformer(vocab, length, 32, 4, 1, 64, image_encoder=ImageEncoder(shape, (8,), 32, rngs=nnx.Rngs(4)),
                        rngs=nnx.Rngs(4)),
            AttentionRNN(vocab, 16, 32, image_encoder=ImageEncoder(shape, (8,), 64, rngs=nnx.Rngs(5)), rngs=nnx.Rngs(5))]


@pytest.mark.parametrize("model", models() + image_models(), ids=MODEL_IDS + ["image-transformer", "image-rnn"])
def test_teacher_forced_on_repeated_memory_equals_the_full_pass_on_repeated_sources(model):
    # Captioning's evaluation encodes each image once and repeats its memory per reference.
    if isinstance(model.image_encoder, ImageEncoder):
        source = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    else:
        source = jnp.array([[5, 6, 7, tok.EOS], [8, 9, tok.EOS, 0]])
    target_in = jnp.array([[tok.BOS, 9, 10, 11], [tok.BOS, 13, 14, 0], [tok.BOS, 7, 0, 0],
                           [tok.BOS, 12, 11, 10], [tok.BOS, 8, 0, 0], [tok.BOS, 9, 9, 0]])
    memory = decode.encode_repeated(model, source, 3)
    np.testing.assert_allclose(model.teacher_forced(memory, target_in), model(jnp.repeat(source, 3, axis=0), target_in),
                               atol=1e-5)


# Decoding.
@pytest.mark.parametrize("model", models(), ids=MODEL_IDS)
def test_beam_one_equals_greedy(model):
    source = jax.random.randint(jax.random.key(0), (6, 8), 4, 40).at[:, 5:].set(0).at[:, 4].set(tok.EOS)
    greedy = decode.greedy(model, source, 10)
    assert greedy.shape == (6, 10)
    np.testing.assert_array_equal(decode.beam_search(model, source, 10, beam_size=1, alpha=0.0), greedy)
    np.testing.assert_array_equal(decode.beam_search(model, source, 10, beam_size=1, alpha=0.6), greedy)


class MarkovModel:
    """A hand-built decoder whose next-token distribution depends only on the previous token:
    from BOS, A 0.55 / B 0.45; after A, EOS 0.4 / A 0.3 / B 0.3; after B, EOS 0.95 / A 0.05.
    Greedy says A EOS (p 0.22); the best sequence is B EOS (p 0.4275)."""

    A, B = 4, 5
    table = np.full((6, 6), 1e-12)
    table[tok.BOS, [A, B]] = 0.55, 0.45
    table[A, [tok.EOS, A, B]] = 0.4, 0.3, 0.3
    table[B, [tok.EOS, A]] = 0.95, 0.05
    table[[tok.PAD, tok.UNK, tok.EOS], tok.EOS] = 1.0

    def encode(self, source):
        return {"dummy": jnp.zeros((source.shape[0], 1))}

    def init_cache(self, memory, length):
        return {"dummy": jnp.zeros((memory["dummy"].shape[0], 1))}

    def decode_step(self, memory, cache, tokens, t):
        previous = jax.lax.dynamic_index_in_dim(tokens, t, axis=1, keepdims=False)
        return jnp.log(jnp.asarray(self.table, jnp.float32))[previous], cache


def test_beam_search_finds_the_best_sequence_greedy_misses():
    model, source = MarkovModel(), jnp.zeros((3, 2), jnp.int32)
    greedy = np.asarray(decode.greedy(model, source, 5))
    beam = np.asarray(jax.jit(lambda s: decode.beam_search(model, s, 5, beam_size=2, alpha=0.0))(source))
    assert greedy[0].tolist() == [MarkovModel.A, tok.EOS, 0, 0, 0]
    assert (beam == [MarkovModel.B, tok.EOS, 0, 0, 0]).all()


def test_a_hypothesis_cut_at_max_length_competes_with_finished_ones():
    class Endless(MarkovModel):  # EOS has probability 1e-12: finished beams score far worse
        table = np.full((6, 6), 1e-12)
        table[:, MarkovModel.A] = 1.0

    beam = np.asarray(decode.beam_search(Endless(), jnp.zeros((1, 2), jnp.int32), 4, beam_size=3))
    assert beam.tolist() == [[MarkovModel.A] * 4]


def test_dropout_drops_at_its_rate_and_keeps_the_mean():
    from aelab.models.seq2seq import dropout

    x = jnp.ones((101, 33, 7))  # an odd size: the last 32-bit word gives one 16-bit draw
    assert dropout(x, 0.1, None) is x and dropout(x, 0.0, jax.random.key(0)) is x
    out = np.asarray(dropout(x, 0.1, jax.random.key(0)))
    kept = out > 0
    # every kept unit is scaled by 1 / (1 - p), p = round(0.1 * 2^16) / 2^16 = 6554 / 65536
    np.testing.assert_allclose(out[kept], 65536 / (65536 - 6554), rtol=1e-6)
    assert abs(1 - kept.mean() - 6554 / 65536) < 4 * np.sqrt(0.09 / x.size)  # 4 standard errors
    assert abs(out.mean() - 1.0) < 0.02
    assert not np.array_equal(out, np.asarray(dropout(x, 0.1, jax.random.key(1))))
    np.testing.assert_array_equal(out, np.asarray(dropout(x, 0.1, jax.random.key(0))))


def test_dropout_masks_are_independent_across_sites_units_and_bits():
    from aelab.models.seq2seq import dropout, dropout_bits

    p, n = 0.25, 200_000
    key = jax.random.key(3)
    first, second = (np.asarray(dropout(jnp.ones(n), p, jax.random.fold_in(key, i))) == 0 for i in (1, 2))
    tolerance = 4 * np.sqrt(p * p * (1 - p * p) / n)  # 4 standard errors of a fraction near p^2
    assert abs((first & second).mean() - p * p) < tolerance  # two sites of one step
    assert abs((first[0::2] & first[1::2]).mean() - p * p) < 2 * tolerance  # the two halves of a word
    assert abs((first[:-1] & first[1:]).mean() - p * p) < 2 * tolerance  # neighbours
    bits = np.unpackbits(np.asarray(dropout_bits(key, n)).view(np.uint8))
    assert abs(bits.mean() - 0.5) < 4 * np.sqrt(0.25 / bits.size)


# Losses and scores.
def test_label_smoothed_loss_by_hand_and_padding_masked():
    logits = jnp.log(jnp.array([[[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]]))
    target = jnp.array([[2, tok.PAD]])
    smoothed, nll, correct, real = token_losses(logits, target, 0.1)
    # q = 0.9 one-hot + 0.1/4: CE = -(0.925 log 0.1 + 0.025 (log 0.7 + 2 log 0.1))
    expected = -(0.925 * np.log(0.1) + 0.025 * (np.log(0.7) + 2 * np.log(0.1)))
    np.testing.assert_allclose(smoothed[0, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(nll[0, 0], -np.log(0.1), rtol=1e-5)
    assert real.tolist() == [[1.0, 0.0]] and correct[0, 0] == 0.0
    _, _, correct, _ = token_losses(logits, jnp.array([[0, 3]]), 0.1)
    assert correct.tolist() == [[1.0, 1.0]]  # the most likely token, and a token tied for most likely
    np.testing.assert_array_equal(shift_right(jnp.array([[7, 8, tok.EOS]])), [[tok.BOS, 7, 8]])


def test_corpus_scores_are_sacrebleu():
    perfect = corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    assert corpus_scores(["a dog"], ["the cat sat on the mat"])["bleu"] < 5


# End to end.
def reverse_corpus(path, n=1200, seed=0):
    """Random words of letters a-h, and the same words in reverse order."""
    rng = np.random.default_rng(seed)
    words = ["ab", "cd", "ef", "gh", "ba", "dc", "fe", "hg"]
    lines = []
    for _ in range(n):
        sentence = [words[i] for i in rng.integers(0, len(words), rng.integers(2, 6))]
        lines.append(" ".join(sentence) + "\t" + " ".join(reversed(sentence)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def mt_config(path, arch="transformer", **overrides):
    config = base_config()
    config.task, config.loss = "translation", "cross_entropy"
    config.data.name = f"textpairs:{path}"
    config.data.test_fraction, config.data.val_fraction = 0.1, 0.1
    config.model.arch = arch
    rnn, transformer = config.model.rnn, config.model.transformer
    rnn.embed_dim, rnn.hidden_dim, rnn.num_layers, rnn.dropout = 32, 64, 2, 0.0
    transformer.embed_dim, transformer.num_layers, transformer.num_heads = 32, 2, 4
    transformer.mlp_dim, transformer.dropout = 64, 0.0
    config.text.vocab_size, config.text.max_length, config.text.buckets = 20, 12, (8,)
    config.text.label_smoothing = 0.0
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule, config.optimizer.warmup_steps = "warmup_cosine", 50
    config.train.num_steps, config.train.batch_size = 400, 32
    config.train.eval_batch_size = 64
    config.train.log_every, config.train.eval_every, config.train.checkpoint_every = 100, 200, 200
    config.train.progress, config.train.tensorboard = False, False
    config.decode.beam_size, config.decode.eval_examples = 2, 50
    for key, value in overrides.items():
        set_value(config, key, value)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_tiny_model_learns_to_reverse(tmp_path, arch, monkeypatch, capsys):
    """The RNN learns from one TSV file (test and validation carved); the Transformer from a fixed-
    split folder of parallel files, whose test file `aelab translate --reference` then scores."""
    workdir = str(tmp_path / "run")
    if arch == "rnn":
        config = mt_config(reverse_corpus(tmp_path / "r.tsv"), arch)
    else:
        _, parallel = write_fixed_splits(tmp_path / "fixed")
        config = mt_config(parallel, arch, **{"data.source_lang": "src", "data.target_lang": "tgt"})
    summary = train.train_and_evaluate(config, workdir)
    assert summary["eval"]["token_accuracy"] > 0.9
    assert summary["eval"]["bleu"] > 80 > summary["baselines"]["copy_source"]["bleu"]
    assert os.path.exists(os.path.join(workdir, "tokenizer.model"))
    assert os.path.exists(os.path.join(workdir, "samples", "test_400.txt"))
    assert os.path.exists(os.path.join(workdir, "samples", "val_200.txt"))
    assert summary["data"]["train_skipped_longer_than_max_length"] == 0
    assert ("carved" in summary["data"]) == (arch == "rnn")

    # translate: stdin/file in, one line out per line, empty lines kept, over-long lines refused;
    # the model comes back from the workdir alone: the corpus is never read again.
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("translate read the training data"))
    (tmp_path / "in.txt").write_text("ab cd ef\n\ngh ba\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["aelab", "translate", f"--workdir={workdir}", f"--input={tmp_path / 'in.txt'}",
                 f"--out={out}"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ef cd ab" and lines[1] == "" and lines[2] == "ba gh"
    (tmp_path / "long.txt").write_text("ab\n" + "ab cd " * 20 + "\n", encoding="utf-8")
    assert main(["aelab", "translate", f"--workdir={workdir}", f"--input={tmp_path / 'long.txt'}",
                 f"--out={tmp_path / 'long_out.txt'}"]) == 2
    assert not (tmp_path / "long_out.txt").exists()
    if arch == "transformer":
        score_test_file(workdir, parallel, summary, tmp_path, capsys)


def score_test_file(workdir, folder, summary, tmp_path, capsys):
    """`aelab translate --input=test.src --reference=test.tgt` prints sacreBLEU's BLEU and chrF with
    their signatures; a reference of another length is one line, exit 2."""
    capsys.readouterr()
    out = tmp_path / "test.out"
    assert main(["aelab", "translate", f"--workdir={workdir}", f"--input={folder / 'test.src'}",
                 f"--reference={folder / 'test.tgt'}", f"--out={out}"]) == 0
    printed = capsys.readouterr().err
    bleu = float(printed.split("BLEU = ")[1].split()[0])
    assert bleu > 80 and abs(bleu - summary["eval"]["bleu"]) < 5, printed
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in printed
    assert "chrF2 = " in printed and "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:" in printed
    assert len(out.read_text(encoding="utf-8").splitlines()) == 100
    (tmp_path / "short.tgt").write_text("one\n", encoding="utf-8")
    assert main(["aelab", "translate", f"--workdir={workdir}", f"--input={folder / 'test.src'}",
                 f"--reference={tmp_path / 'short.tgt'}", f"--out={tmp_path / 'x'}"]) == 2
    assert "has 1 lines but the input 100" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_reuses_the_saved_tokenizer(tmp_path, monkeypatch):
    path = reverse_corpus(tmp_path / "r.tsv", n=300)
    workdir = str(tmp_path / "run")
    config = mt_config(path, **{"train.num_steps": 20, "train.eval_every": 10, "train.checkpoint_every": 10,
                                "decode.eval_examples": 0, "decode.beam_size": 1})
    train.train_and_evaluate(config, workdir)
    saved = open(os.path.join(workdir, "tokenizer.model"), "rb").read()

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was retrained")

    monkeypatch.setattr(tok, "train", no_training)
    config.train.num_steps = 30
    summary = train.train_and_evaluate(config, workdir)
    assert summary["step"] == 30
    assert open(os.path.join(workdir, "tokenizer.model"), "rb").read() == saved


def test_bad_translation_configs_fail_before_anything_is_written(tmp_path):
    path = reverse_corpus(tmp_path / "r.tsv", n=100)
    for key, value, message in [("text.max_length", 1, "max_length"),
                                ("text.buckets", (4, 50), "buckets"),
                                ("model.arch", "mlp", "model.arch"),
                                ("model.rnn.cell", "rnn", "model.rnn.cell"),
                                ("decode.beam_size", 0, "beam_size"),
                                ("model.transformer.num_heads", 5, "divisible")]:
        workdir = tmp_path / f"bad_{key}"
        with pytest.raises(UsageError, match=message):
            arch = "rnn" if key.startswith("model.rnn.") else "transformer"
            train.train_and_evaluate(mt_config(path, arch, **{key: value}), str(workdir))
        assert not workdir.exists()
    config = mt_config(path)
    config.data.name = "digits"
    with pytest.raises(UsageError, match="sentence pairs"):
        train.train_and_evaluate(config, str(tmp_path / "digits"))


@pytest.mark.shared_data
def test_spa_eng_corpus_reads_whole():
    path = SHARED_DATA / "spa_eng" / "spa-eng.zip"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    splits, skipped = read_textpairs(str(path), reverse=True, seed=0)
    assert len(splits["train"]) == 118964
    assert skipped == {}  # every line of spa.txt is a pair (the zip's notes are in _about.txt)
    assert "¿" in "".join(splits["train"].source[:200])  # Spanish is the source


def test_decoders_compile_with_the_train_steps_matmul_library(tmp_path):
    """A translation decoder uses YNNPACK matmuls on CPU, as the train step does (faster there),
    unless train.cpu_ynn_dots says otherwise; a captioner (convolutions) keeps Eigen."""
    if jax.default_backend() != "cpu":
        pytest.skip(f"YNNPACK is XLA:CPU's matmul library; {jax.default_backend()} compiles with XLA's defaults")
    path = reverse_corpus(tmp_path / "r.tsv", n=300)
    for overrides, expected in (({}, True), ({"train.cpu_ynn_dots": False}, False)):
        run = train.build(mt_config(path, "rnn", **overrides))
        model = nnx.merge(run.graphdef, run.state)[0]
        run.task.generator(model, 2)
        source = jnp.asarray(run.dataset.test.source[:4])
        hlo = run.task._decoders[2].lower(nnx.split(model)[1], source).compile().as_text()
        assert ("__ynn_fusion" in hlo) is expected, overrides
    assert all(compiler.has_convolutions(m) for m in image_models())  # captioners: Eigen
    assert not any(compiler.has_convolutions(m) for m in models())


# Splits: no source sentence on two sides; a benchmark's fixed splits.
def repeated_source_corpus(path, sources=200, seed=0):
    """Every source sentence three times, with three different targets (as Tatoeba has them)."""
    rng = np.random.default_rng(seed)
    words = ["ab", "cd", "ef", "gh", "ba", "dc", "fe", "hg"]
    lines = []
    for i in range(sources):
        sentence = " ".join(words[j] for j in rng.integers(0, len(words), 4)) + f" n{i}"
        lines += [f"{sentence}\t{variant} {sentence}" for variant in ("x", "y", "z")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("split_by", ["", "source", "example"])
def test_no_source_sentence_is_in_two_splits(tmp_path, split_by):
    """Regression: pairs were carved one by one, so a source sentence with several translations
    sat in train and test at once (8.6% of the spa-eng test sources). Grouped by normalized source
    (the default for sentence pairs), no test or validation source occurs in train."""
    config = mt_config(repeated_source_corpus(tmp_path / "r.tsv"), **{"data.split_by": split_by})
    config.data.test_fraction = config.data.val_fraction = 0.2
    dataset = data.load(config.data)
    keys = {name: set(dataset.split(name).source_keys()) for name in ("train", "val", "test")}
    shared = len(keys["test"] & keys["train"]) + len(keys["val"] & keys["train"])
    if split_by == "example":  # the old way leaks: the check above can fail
        assert shared > 20
        return
    assert shared == 0 and len(keys["test"]) >= 30 and len(keys["val"]) >= 20
    assert dataset.info["split_by"] == "source" and dataset.info["test_sources_in_train"] == 0
    assert dataset.info["test_source_sentences"] == len(keys["test"])


def test_source_sentences_are_normalized_before_grouping():
    pairs = TextPairs(np.array(["¿Dónde  está?", "¿dónde está?", "ＡＢ", "ab"], dtype=object),
                      np.array(["1", "2", "3", "4"], dtype=object))
    keys = pairs.source_keys()
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]


def test_block_carving_takes_one_contiguous_run():
    """data.split_by=block (stacks of slices like ISBI): the carved examples are consecutive."""
    from aelab.data.splits import Split, carve

    split = Split(np.zeros((30, 2, 2, 1), np.float32), np.arange(30))
    for seed in range(5):
        rest, held = carve(split, 0.2, seed, "test", "block")
        assert len(held) == 6 and np.all(np.diff(held.labels) == 1)
        assert sorted([*rest.labels, *held.labels]) == list(range(30))
    with pytest.raises(UsageError, match="split_by=source .* no sentence pairs"):
        config = base_config()
        config.data.split_by = "source"
        data.load(config.data)


def test_saved_configs_without_split_by_keep_their_old_splits():
    """A run saved before data.split_by existed carved pairs one by one; resolving its config gives
    split_by=example, so resuming it reads the same splits (or, with another split_by, is
    refused as a change of meaning)."""
    from aelab.config import from_saved

    saved = base_config("translation").to_dict()
    del saved["data"]["split_by"]
    assert from_saved(saved).data.split_by == "example"
    assert from_saved(base_config("translation").to_dict()).data.split_by == ""


def write_fixed_splits(folder, seed=1):
    """One reverse corpus, cut into train/valid/test, in both layouts: TSV files and parallel
    files `{stem}.src` + `{stem}.tgt`."""
    tsv, parallel = folder / "tsv", folder / "parallel"
    tsv.mkdir(parents=True)
    parallel.mkdir()
    lines = reverse_corpus(folder / "all.tsv", n=1100, seed=seed)
    lines = open(lines, encoding="utf-8").read().splitlines()
    for stem, part in (("train", lines[:900]), ("valid", lines[900:1000]), ("test", lines[1000:])):
        (tsv / f"{stem}.tsv").write_text("\n".join(part) + "\n", encoding="utf-8")
        for column, suffix in ((0, "src"), (1, "tgt")):
            (parallel / f"{stem}.{suffix}").write_text("".join(line.split("\t")[column] + "\n"
                                                               for line in part), encoding="utf-8")
    return tsv, parallel


def test_fixed_split_folders_in_both_layouts_read_the_same_splits(tmp_path):
    tsv, parallel = write_fixed_splits(tmp_path)
    by_tsv = data.load(mt_config(tsv).data)
    by_files = data.load(mt_config(parallel, **{"data.source_lang": "src", "data.target_lang": "tgt"}).data)
    for name, size in (("train", 900), ("val", 100), ("test", 100)):
        a, b = by_tsv.split(name), by_files.split(name)
        assert len(a) == size and list(a.source) == list(b.source) and list(a.target) == list(b.target)
    assert list(by_tsv.test.source[:3]) == [line.split("\t")[0] for line in
                                             (tsv / "test.tsv").read_text().splitlines()[:3]]  # file order
    assert "carved" not in by_tsv.info
    (tsv / "valid.tsv").rename(tsv / "other.tsv")  # a missing split is carved from train
    carved = data.load(mt_config(tsv).data)
    assert carved.info["carved"] == ["val"] and len(carved.test) == 100


@pytest.mark.parametrize("setup, overrides, message", [
    (lambda d: (d / "train.src").unlink(), {"data.source_lang": "src", "data.target_lang": "tgt"},
     "no train.src \\+ train.tgt"),
    (lambda d: None, {}, "no train.tsv .* set data.source_lang and data.target_lang"),
    (lambda d: None, {"data.source_lang": "src"}, "both data.source_lang and data.target_lang"),
    (lambda d: (d / "test.tgt").write_text("one line\n"), {"data.source_lang": "src", "data.target_lang": "tgt"},
     "test.src has 100 lines but .*test.tgt 1"),
])
def test_bad_fixed_split_folders_are_one_line(tmp_path, setup, overrides, message):
    _, parallel = write_fixed_splits(tmp_path)
    setup(parallel)
    with pytest.raises(UsageError, match=message):
        data.load(mt_config(parallel, **overrides).data)


@pytest.mark.slow
def test_a_damaged_tokenizer_is_one_line(tmp_path, capsys):
    """tokenizer.model symlinked to /etc/passwd, truncated, random or deleted: `aelab translate`
    says so in one line naming it (exit 2), and never reads a file outside the run."""
    path = reverse_corpus(tmp_path / "r.tsv", n=300)
    base = tmp_path / "base"
    train.train_and_evaluate(mt_config(path, **{"train.num_steps": 5, "train.eval_every": 5,
                                                "train.checkpoint_every": 5, "decode.eval_examples": 0,
                                                "decode.beam_size": 1}), str(base))
    (tmp_path / "in.txt").write_text("ab cd\n")
    damages = {"symlinked": (lambda p: (p.unlink(), p.symlink_to("/etc/passwd")), "leads outside"),
               "truncated": (lambda p: p.write_bytes(p.read_bytes()[:40]), "is damaged"),
               "random": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)), "is damaged"),
               "empty": (lambda p: p.write_bytes(b""), "is damaged: it is empty"),
               "deleted": (lambda p: p.unlink(), "no tokenizer.model")}
    for name, (damage, message) in damages.items():
        workdir = tmp_path / name
        shutil.copytree(base, workdir)
        damage(workdir / "tokenizer.model")
        capsys.readouterr()
        assert main(["aelab", "translate", f"--workdir={workdir}", f"--input={tmp_path / 'in.txt'}"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
