"""A tokenizer's vocabulary as bytes, the form constraints are checked in.

Byte-level BPE tokens (Llama 3, Qwen) map back through the GPT-2 byte alphabet; SentencePiece
tokens through '▁' and <0xHH> byte pieces. Special tokens have no bytes (None): a constraint never
allows them, except the end-of-sequence ids once the constraint is complete.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_TABLES: dict[tuple, "TokenTable"] = {}


class TokenTable:
    def __init__(self, token_bytes: list[bytes | None], eos_ids: frozenset[int]):
        self.token_bytes = token_bytes
        self.vocab_size = len(token_bytes)
        self.eos_ids = eos_ids
        lengths = np.array([len(b) if b else 0 for b in token_bytes], dtype=np.int32)
        self.lengths = lengths
        width = max(int(lengths.max()), 1)
        self.matrix = np.zeros((self.vocab_size, width), dtype=np.uint8)
        for i, b in enumerate(token_bytes):
            if b:
                self.matrix[i, :len(b)] = np.frombuffer(b, dtype=np.uint8)
        self.byte_token: dict[int, int] = {}              # single-byte tokens, for bytes cut mid-character
        for i in np.nonzero(lengths == 1)[0]:
            self.byte_token.setdefault(int(self.matrix[i, 0]), int(i))
        self._trie = None
        self.block_walks: dict = {}                       # masks' walks of the JSON building blocks (block_walks)
        self.plain_string = None                          # its body's walk by character counts (counted_walks)

    @property
    def trie(self):
        """The vocabulary's byte trie (token_trie), built on first use."""
        if self._trie is None:
            from gateway.structured.token_trie import TokenTrie
            self._trie = TokenTrie(self)
        return self._trie

    @classmethod
    def shared(cls, hf, vocab_size: int, eos_ids: frozenset[int]) -> "TokenTable":
        """One table per tokenizer in the process, so its trie and block walks are built once."""
        key = (hf.name_or_path, type(hf).__name__, len(hf), vocab_size, eos_ids)
        if key not in _TABLES:
            if len(_TABLES) >= 4:
                _TABLES.pop(next(iter(_TABLES)))
            _TABLES[key] = cls.from_hf(hf, vocab_size, eos_ids)
        return _TABLES[key]

    @classmethod
    def from_hf(cls, hf, vocab_size: int, eos_ids: frozenset[int]) -> "TokenTable":
        """`vocab_size` is the model's (it may exceed the tokenizer's: those ids get no bytes)."""
        decoder = _byte_decoder()
        special = set(hf.all_special_ids)
        byte_level = type(hf.backend_tokenizer.decoder).__name__ != "Metaspace" and \
            "ByteLevel" in str(hf.backend_tokenizer.decoder)
        out: list[bytes | None] = [None] * vocab_size
        added = {t.content: (i, t.special) for i, t in hf.added_tokens_decoder.items()}
        for piece, i in hf.get_vocab().items():
            if i >= vocab_size or i in special:
                continue
            if piece in added:
                out[i] = None if added[piece][1] else piece.encode("utf-8")
            elif byte_level:
                try:
                    out[i] = bytes(decoder[ch] for ch in piece)
                except KeyError:
                    out[i] = piece.encode("utf-8")
            elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
                out[i] = bytes([int(piece[3:5], 16)])
            else:
                out[i] = piece.replace("▁", " ").encode("utf-8")
        return cls(out, eos_ids)
