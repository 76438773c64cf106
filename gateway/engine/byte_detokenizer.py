"""Streaming detokenization for byte-level BPE tokenizers (Llama 3, Qwen): each token is a fixed byte
string, so a stream's text is the UTF-8 decode of the concatenated bytes, done incrementally.

The window detokenizer (`tokenizer.IncrementalDetokenizer`) asks the tokenizers library to decode its
window twice per token, a few microseconds each; with a thousand streams that was most of a decode
step's host time. Here a push is a table lookup and one call of Python's incremental UTF-8 decoder,
which holds back a character cut between tokens and replaces invalid bytes as the library's lossy
decode does. `BytePieces.build` checks that on the tokenizer itself and returns None where the two
would differ (any decoder other than plain ByteLevel, or a table that does not reproduce sample
decodes), and the window detokenizer serves instead.
"""
from __future__ import annotations

import codecs
import random
from collections.abc import Iterable, Sequence

from tokenizers import decoders

_UTF8 = codecs.getincrementaldecoder("utf-8")


def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others
    (space, controls, ...) for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class BytePieces:
    """Each token id's bytes, with or without special tokens."""

    def __init__(self, pieces: list[bytes], special: frozenset[int]):
        self.pieces, self.special = pieces, special
        self.skipped = [b"" if i in special else p for i, p in enumerate(pieces)]

    @classmethod
    def build(cls, backend, samples: int = 200) -> "BytePieces | None":
        """The table for a `tokenizers.Tokenizer`, or None where it would not reproduce its decode:
        checked on every token alone and on random id sequences, with and without skipping."""
        if not isinstance(backend.decoder, decoders.ByteLevel):
            return None
        to_byte = _unicode_to_byte()
        as_latin1 = str.maketrans({c: chr(b) for c, b in to_byte.items()})
        vocab = backend.get_vocab(with_added_tokens=True)
        added = backend.get_added_tokens_decoder()
        size = backend.get_vocab_size(with_added_tokens=True)
        if len(vocab) != size or set(vocab.values()) != set(range(size)):
            return None
        pieces = [b""] * size
        try:
            for token, i in vocab.items():
                if i in added:        # an added token's own characters: as the ByteLevel decoder, UTF-8
                    pieces[i] = b"".join(bytes([to_byte[c]]) if c in to_byte else c.encode() for c in token)
                else:                 # a BPE token is spelled in the byte alphabet only
                    pieces[i] = token.translate(as_latin1).encode("latin-1")
        except UnicodeEncodeError:
            return None
        table = cls(pieces, frozenset(i for i, token in added.items() if token.special))
        alone = [[i] for i in range(size)]
        if [p.decode("utf-8", "replace") for p in pieces] != backend.decode_batch(alone, skip_special_tokens=False):
            return None
        rng = random.Random(0)
        probes = [[i] for i in added] + [[rng.randrange(size) for _ in range(rng.randint(1, 24))]
                                         for _ in range(samples)] + [[0, size, size + 1000, 0]]
        for ids in probes:
            for skip in (False, True):
                if table.decode(ids, skip) != backend.decode(ids, skip_special_tokens=skip):
                    return None
        return table

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        table = self.skipped if skip_special_tokens else self.pieces
        return b"".join(table[i] if i < len(table) else b"" for i in ids).decode("utf-8", "replace")


class ByteDetokenizer:
    """Text for a growing token sequence, one piece per push, summing to the full decode."""
    __slots__ = ("_table", "_utf8")

    def __init__(self, pieces: BytePieces, skip_special_tokens: bool = False):
        self._table = pieces.skipped if skip_special_tokens else pieces.pieces
        self._utf8 = _UTF8("replace")

    def push(self, token_ids: Iterable[int]) -> str:
        table = self._table
        try:
            data = b"".join([table[i] for i in token_ids])
        except IndexError:                     # a model vocabulary padded past the tokenizer's: no text
            data = b"".join([table[i] if i < len(table) else b"" for i in token_ids])
        return self._utf8.decode(data)

    def flush(self) -> str:
        return self._utf8.decode(b"", True)
