"""`aelab translate`: sentences from stdin or a file, translated by a trained translation workdir.

One output line per input line, in order. An empty input line gives an empty
output line (line numbers stay aligned). A line longer than the model's
`text.max_length` tokens is an error naming the line, raised before anything
is translated: the model was never trained on such lengths, and cutting the
sentence would silently change it.

With `--reference=FILE` (one reference a line, aligned with the input) the
translations are also scored with sacreBLEU: BLEU and chrF, each printed on
stderr with its sacreBLEU signature, so a figure can be compared with
published ones (`aelab translate --input=test.es --reference=test.en`).
"""

from __future__ import annotations

import sys

from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import check_beam_size, write_text


def read_lines(input_path: str | None, flag: str = "--input") -> list[str]:
    if not input_path or input_path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(input_path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"{flag}={input_path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{flag}={input_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def scored(hypotheses: list[str], references: list[str]) -> list[str]:
    """sacreBLEU's BLEU and chrF lines, each with its signature (the settings that make a score
    comparable: tokenizer, casing, smoothing, version)."""
    from sacrebleu.metrics import BLEU, CHRF

    lines = []
    for metric in (BLEU(), CHRF()):
        score = metric.corpus_score(hypotheses, [references])
        lines.append(f"{score}  (signature: {metric.get_signature()})")
    return lines


def translate(workdir: str, input_path: str | None, out_path: str | None,
              beam_size: int | None = None, reference_path: str | None = None) -> list[str]:
    """Translates the lines of `input_path` (stdin if none) to `out_path` (stdout if none), and
    scores them against `reference_path` when given."""
    check_beam_size(beam_size)
    lines = read_lines(input_path)
    references = None
    if reference_path:  # read before the model is: a bad reference file costs no decoding
        references = read_lines(reference_path, "--reference")
        if len(references) != len(lines):
            raise UsageError(f"--reference={reference_path} has {len(references)} lines but the input "
                             f"{len(lines)}; give one reference a line, aligned with the input")
    run = load(workdir, "translation", "translate")
    translations = run.translate(lines, beam_size)
    written = write_text("".join(t + "\n" for t in translations), out_path)
    if references is not None:
        print("\n".join(scored(translations, [r.strip() for r in references])), file=sys.stderr)
    return written
