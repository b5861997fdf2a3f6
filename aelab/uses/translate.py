"""`aelab translate`: sentences from stdin or a file, translated by a trained translation workdir.

One output line per input line, in order. An empty input line gives an empty
output line (line numbers stay aligned). A line longer than the model's
`text.max_length` tokens is an error naming the line, raised before anything
is translated: the model was never trained on such lengths, and cutting the
sentence would silently change it.
"""

from __future__ import annotations

import sys

from aelab.data.text import pad_rows
from aelab.errors import UsageError
from aelab.restore import load
from aelab.tasks.translation import TranslationTask
from aelab.uses import check_beam_size, write_text


def read_lines(input_path: str | None) -> list[str]:
    if not input_path or input_path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(input_path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise UsageError(f"--input={input_path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--input={input_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def translate_lines(task: TranslationTask, model, lines: list[str], beam_size: int | None = None,
                    batch_size: int = 64) -> list[str]:
    """Translations of `lines` (empty lines stay empty)."""
    text = [line.strip() for line in lines]
    index = [i for i, line in enumerate(text) if line]
    max_length = task.config.text.max_length
    ids = task.tokenizer.encode([text[i] for i in index])
    for i, row in zip(index, ids):
        if len(row) > max_length:
            raise UsageError(f"line {i + 1} has {len(row)} tokens (EOS included); this model takes at most "
                             f"text.max_length={max_length}: split the sentence")
    out = [""] * len(lines)
    if index:  # the ids above, encoded once, are what the model reads
        source = pad_rows(ids, max_length)
        for i, translation in zip(index, task.generator(model, beam_size)(source, batch_size)):
            out[i] = translation
    return out


def translate(workdir: str, input_path: str | None, out_path: str | None,
              beam_size: int | None = None) -> list[str]:
    """Translates the lines of `input_path` (stdin if none) to `out_path` (stdout if none)."""
    check_beam_size(beam_size)
    lines = read_lines(input_path)
    run = load(workdir, "translation", "translate")
    return write_text("".join(t + "\n" for t in run.translate(lines, beam_size)), out_path)
