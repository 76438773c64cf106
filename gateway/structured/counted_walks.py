"""Walks through a counted string (minLength / maxLength) made from the plain string's walk,
filtered by character counts, instead of a walk of the whole trie at every count.

A lifted count_dfa(lo, hi) (json_strings) has one body state per count c of characters read. From
count c, a token path of k characters from the walk's start is alive exactly where the plain
string's is and: it stays in the body while c + k <= hi; it reaches the closing quote (k counted
before it) when lo <= c + k <= hi; it reaches a backslash when count c + k may still take a
character (c + k < hi, or no hi), and then exits at that count's escape state. So the walk from
count c is the plain body's walk with each token and each exit node kept by its character count
and the escape exits renamed by count. A character is counted at its first byte, as count_dfa
counts it. The plain walk is annotated once per tails (from every token: once per tokenizer) and
serves every count, every bound and every schema.

Automata carry where their counted strings lie (Dfa.counted, set by json_strings and kept by
json_blocks' Builder); MaskComputer checks a block's rows against the lifted automaton before it
trusts them (`Layout.fits`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.structured.grammar import Dfa
from gateway.structured.token_walk import ALL, PACK_ABOVE, Tails, Walk, _exits, or_ids, pack_ids, walk

QUOTE, BACKSLASH = ord('"'), ord("\\")


@dataclass(slots=True)
class Layout:
    """Where the states of the lifted count_dfa(lo, hi) are: the body boundary of count c is
    1 + 8c, `final` follows the closing quote, `escape[c]` follows a backslash at count c (-1: none)."""
    lo: int
    hi: int | None
    dfa: Dfa
    exits: np.ndarray
    top: int
    final: int
    escape: np.ndarray

    @classmethod
    def of(cls, lo: int, hi: int | None) -> "Layout":
        from gateway.structured.json_strings import lifted_count
        dfa = lifted_count(lo, hi)
        top = lo if hi is None else hi
        escape = dfa.trans[1 + 8 * np.arange(top + 1), BACKSLASH].astype(np.int64)
        exits = dfa.accept.copy()
        exits[escape[escape >= 0]] = True
        return cls(lo, hi, dfa, exits, top, int(np.flatnonzero(dfa.accept)[0]), escape)

    def fits(self, dfa: Dfa, exits: np.ndarray, offset: int) -> bool:
        """The automaton holds this layout from `offset` on (every state but its unused start),
        with the same exit points. A rule that is the lifted count itself (a string's own rule; same
        digest: json_strings names it by (lo, hi)) skips comparing its megabytes of table."""
        n, trans = self.dfa.num_states, dfa.trans
        if offset + n > len(trans):
            return False
        if offset == 0 and len(trans) == n and dfa.digest() == self.dfa.digest():
            return bool(np.array_equal(exits[1:], self.exits[1:]))
        want = np.where(self.dfa.trans[1:] >= 0, self.dfa.trans[1:] + offset, -1)
        return bool(np.array_equal(trans[offset + 1:offset + n], want)
                    and np.array_equal(exits[offset + 1:offset + n], self.exits[1:]))

    def count_at(self, state: int) -> int | None:
        """The count whose body boundary `state` (relative to the layout) is, or None."""
        c, r = divmod(state - 1, 8)
        return c if r == 0 and 0 <= c <= self.top else None


@dataclass(slots=True, eq=False)
class Annotated:
    """The plain string body's walk from one tails set; k: characters of the token path from its
    tails root, before the quote or backslash that ends it."""
    body: tuple[np.ndarray, np.ndarray]       # (token ids read whole inside the body, k), sorted by k
    quoted: tuple[np.ndarray, np.ndarray]     # tokens read whole through the closing quote
    escaped: tuple[np.ndarray, np.ndarray]    # tokens read whole through a backslash
    quote_hits: tuple[np.ndarray, ...]        # (depth, node, k) of the nodes just past the quote, sorted by k
    escape_hits: dict[int, Tails]             # k -> the nodes just past a backslash
    body_words: list[np.ndarray] | None = None     # bitmask words of body tokens with at most k characters
    _quote_tails: dict = field(default_factory=dict)

    def quote_tails(self, least: int, most: int) -> Tails | None:
        depth, node, k = self.quote_hits
        a, b = np.searchsorted(k, least), np.searchsorted(k, most, side="right")
        if a >= b:
            return None
        found = self._quote_tails.get((a, b))
        if found is None:
            found = self._quote_tails[(a, b)] = _exits(depth[a:b], node[a:b], np.zeros(b - a, np.int64))[0][1]
        return found


def plain_string(table) -> tuple[Layout, Annotated]:
    """The plain string's layout and its walk from every token, annotated: once per tokenizer,
    kept on the table (block_walks builds it with the building blocks' walks)."""
    if table.plain_string is None:
        layout = Layout.of(0, None)
        table.plain_string = (layout, annotate(table.trie, table, -(-table.vocab_size // 32), layout, ALL))
    return table.plain_string


def annotate(trie, table, num_words: int, plain: Layout, tails: Tails) -> Annotated:
    """The plain body's walk (from its count-0 boundary) of every root depth of tails, annotated."""
    parts = {"body": [], "quoted": [], "escaped": [], "quote": [], "escape": []}
    for d0, nodes in sorted(tails.roots.items()):
        w = walk(trie, num_words, plain.dfa.trans, plain.exits, 1, tails if tails is ALL else Tails({d0: nodes}))
        ids = w.consumed
        k = _chars(table, ids, d0, table.lengths[ids].astype(np.int64))
        last = table.matrix[ids, np.maximum(table.lengths[ids] - 1, 0)]
        ends = (last == QUOTE) | (last == BACKSLASH)
        parts["body"].append((ids[~ends], k[~ends]))
        parts["quoted"].append((ids[last == QUOTE], k[last == QUOTE] - 1))
        parts["escaped"].append((ids[last == BACKSLASH], k[last == BACKSLASH] - 1))
        for state, rest in w.exits:
            for depth, hit in rest.roots.items():
                tokens = trie.ids[trie.levels[depth].lo[hit]]
                before = _chars(table, tokens, d0, np.full(len(hit), depth - 1))
                kind = "quote" if state == plain.final else "escape"
                parts[kind].append((np.full(len(hit), depth), hit, before))
    joined = {name: [np.concatenate(p) if p else np.zeros(0, np.int64) for p in zip(*rows)] if rows else
              [np.zeros(0, np.int64)] * (3 if name in ("quote", "escape") else 2) for name, rows in parts.items()}
    by_k = lambda arrays: tuple(a[np.argsort(arrays[-1], kind="stable")] for a in arrays)
    body = by_k(joined["body"])
    quoted, escaped = by_k(joined["quoted"]), by_k(joined["escaped"])
    depth, node, k = joined["escape"]
    escape_hits = {int(j): _exits(depth[k == j], node[k == j], np.zeros(int((k == j).sum()), np.int64))[0][1]
                   for j in np.unique(k).tolist()}
    out = Annotated((body[0], body[1]), (quoted[0], quoted[1]), (escaped[0], escaped[1]), by_k(joined["quote"]),
                    escape_hits)
    if len(body[0]) > PACK_ABOVE:
        words, out.body_words = np.zeros(num_words, np.uint32), []
        bounds = np.searchsorted(body[1], np.arange(int(body[1][-1]) + 2))
        for j in range(int(body[1][-1]) + 1):
            words = words | pack_ids(body[0][bounds[j]:bounds[j + 1]], num_words)
            out.body_words.append(words)
    return out


def counted_walk(ann: Annotated, layout: Layout, offset: int, c: int, num_words: int, ids: bool = True) -> Walk:
    """The walk from count c's body boundary of the layout placed at `offset`. With ids False, a
    walk whose tokens are many is words only (a walk from every token: nothing reads its ids, and
    the ~1 MB of them cost page faults, ~0.7 ms, at a count's first walk)."""
    room = np.iinfo(np.int64).max if layout.hi is None else layout.hi - c     # characters that fit
    least = max(layout.lo - c, 0)                                            # before the quote
    body, k = ann.body
    take = [body[:np.searchsorted(k, room, side="right")]]
    quoted, k = ann.quoted
    take.append(quoted[(k >= least) & (k <= room)])
    escaped, k = ann.escaped
    take.append(escaped[k < room])
    if ann.body_words is not None:
        words = ann.body_words[min(room, len(ann.body_words) - 1)].copy()
        or_ids(words, np.concatenate(take[1:]))
        consumed = np.concatenate(take) if ids else None
    else:
        consumed = np.concatenate(take)
        words = pack_ids(consumed, num_words) if len(consumed) > PACK_ABOVE else None
    exits = []
    quote = ann.quote_tails(least, room)
    if quote is not None:
        exits.append((offset + layout.final, quote))
    merged: dict[int, list[Tails]] = {}
    for j, tails in ann.escape_hits.items():
        if j < room:
            state = int(layout.escape[min(c + j, layout.top)])
            if state >= 0:
                merged.setdefault(offset + state, []).append(tails)
    for state, parts in merged.items():
        exits.append((state, parts[0] if len(parts) == 1 else _union(parts)))
    return Walk(consumed, words, exits)


def _union(parts: list[Tails]) -> Tails:
    depths = sorted({d for t in parts for d in t.roots})
    return Tails({d: np.sort(np.concatenate([t.roots[d] for t in parts if d in t.roots])) for d in depths})


def _chars(table, ids: np.ndarray, start: int, stop: np.ndarray) -> np.ndarray:
    """Per token, the characters (bytes that are not UTF-8 continuations) among bytes start..stop-1."""
    if not len(ids):
        return np.zeros(0, np.int64)
    width = int(stop.max()) if len(stop) else 0
    if width <= start:
        return np.zeros(len(ids), np.int64)
    rows = table.matrix[ids, start:width]
    counted = (rows < 0x80) | (rows >= 0xC0)
    counted &= np.arange(start, width) < stop[:, None]
    return counted.sum(axis=1).astype(np.int64)
