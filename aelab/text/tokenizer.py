"""Subword tokenization with SentencePiece, one joint vocabulary for source and target.

The tokenizer is trained on the training split only and travels as the bytes
of its model proto: the workdir keeps them (tokenizer.model), so a checkpoint
is self-contained and a resumed or reloaded run never retrains it.
"""

from __future__ import annotations

import io
from typing import Iterable

import numpy as np

from aelab.errors import UsageError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train(sentences: Iterable[str], vocab_size: int, model_type: str = "unigram") -> bytes:
    """A SentencePiece model (serialized) trained on `sentences`; ids 0..3 are pad, unk, bos, eos."""
    import sentencepiece as spm

    sentences = [s for s in sentences if s]
    if not sentences:
        raise UsageError("cannot train a tokenizer on an empty training split")
    proto = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=proto, vocab_size=vocab_size,
            model_type=model_type, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            character_coverage=1.0, num_threads=1, minloglevel=2,
            input_sentence_size=0, shuffle_input_sentence=False)  # deterministic: all, in order
    except RuntimeError as e:  # e.g. a vocabulary larger than the text allows
        reason = str(e).strip().split("] ")[-1]
        raise UsageError(f"text.vocab_size={vocab_size}: SentencePiece cannot train on this text ({reason})") from None
    return proto.getvalue()


class Tokenizer:
    """Encodes text to ids (with EOS, optionally BOS) and decodes ids back to text."""

    def __init__(self, model_proto: bytes, where: str = "the tokenizer"):
        import sentencepiece as spm

        self.model_proto = model_proto
        if not model_proto:
            raise UsageError(f"{where} is damaged: it is empty")
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, TypeError, OSError):  # truncated or foreign bytes
            raise UsageError(f"{where} is damaged: not a SentencePiece model") from None
        if self._sp.get_piece_size() < 4 or [self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(),
                                               self._sp.eos_id()] != [PAD, UNK, BOS, EOS]:
            raise UsageError(f"{where} is damaged: not one of aelab's tokenizers (pad, unk, bos, eos "
                             "must be ids 0 to 3)")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text followed by EOS."""
        return [ids + [EOS] for ids in self._sp.encode(list(texts))]

    def decode(self, ids) -> list[str]:
        """Text of each row of ids, read up to the first EOS; PAD and BOS are dropped."""
        out = []
        for row in ids:
            row = np.asarray(row).tolist()
            if EOS in row:
                row = row[:row.index(EOS)]
            out.append(self._sp.decode([i for i in row if i not in (PAD, BOS)]))
        return out

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)
