"""Token masks: which tokens a grammar allows next, as packed int32 bitmasks for the sampler.

For each stack in the matcher's set, the top rule walks every token (token_walk): tokens it reads
whole are allowed; the tails of tokens that reach a call or a return continue, from the stacks that
call or return there, as smaller tail sets, and so on down until every tail is read or dead. Walks
do not depend on the stack, so they are cached by content and shared by every schema and request of
the mask computer (the building blocks' once per tokenizer: block_walks); what a new stack set costs
is the Python that follows its stacks through cached walks, then an OR of bitmask words. Whole masks
are cached, packed, by stack set. A counted string's body walks as the plain string's walk filtered
by the characters left (counted_walks), so its counts share one walk. A state taking most first
bytes is the walk of the state most of them lead to, put right where the two differ
(difference_walk); failing that, the walk of its reachable form, which rules that go on alike share
(the other keys' string body of every object: the building blocks' walk), or one put together from
walks after the first byte (token_walk.first_byte_split).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from gateway.structured.counted_walks import (
    Annotated,
    Layout,
    annotate,
    counted_walk,
    plain_string,
)
from gateway.structured.difference_walk import corrected, differences, reference_state
from gateway.structured.follow_native import LEAVE, READ, ROOT, Follower
from gateway.structured.follow_native import native as follow_native
from gateway.structured.grammar import Grammar, Rule
from gateway.structured.masks_by_walks import compute_by_walks
from gateway.structured.matcher import MAX_DEPTH, Matcher
from gateway.structured.token_walk import (
    AFTER_FIRST_BYTE,
    ALL,
    WIDE,
    Tails,
    Walk,
    first_byte_split,
    or_ids,
    pack_ids,
    reachable_form,
    walk,
)
from gateway.structured.tokens import TokenTable
from gateway.structured.walk_native import address

ROOT_ADDRESS = address(ROOT)
DIFFERENCES = 4096          # differing nodes past which a wide state is split by first byte instead
TOP = b"top"                # memo key of a stack's top walk, or READ (MaskComputer._top_walk)


def pack(allowed: np.ndarray) -> np.ndarray:
    """bool [V] -> int32 [ceil(V/32)], bit j of word w allowing token 32*w + j."""
    padded = np.zeros(-(-allowed.size // 32) * 32, dtype=np.bool_)
    padded[:allowed.size] = allowed
    return np.packbits(padded, bitorder="little").view("<i4").astype(np.int32)


def unpack(words: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab_size].astype(np.bool_)


class MaskComputer:
    def __init__(self, table: TokenTable, max_masks: int = 4096, max_walks: int = 50_000, content_keys: bool = False,
                 max_rules: int = 20_000):
        self.table = table
        self.max_rules = max_rules             # what is kept per rule, past which all of it is forgotten
        self.forgotten = 0
        self.content_keys = content_keys       # every rule keyed by its content (block_walks' warm-up)
        self.num_words = -(-table.vocab_size // 32)
        self.trie = table.trie
        self.max_masks, self.max_walks = max_masks, max_walks
        self._masks: OrderedDict[tuple, tuple[Grammar, np.ndarray]] = OrderedDict()
        self._walks: OrderedDict[tuple, Walk] = OrderedDict()
        self._rules: dict[int, tuple] = {}     # id(rule) -> (rule, content key, exits)
        self._native: dict[int, tuple] = {}    # id(rule) -> (rule, its arrays and their addresses)
        self._forms: dict[tuple[int, int], tuple] = {}     # (id(rule), state) -> (rule, reachable form)
        self._leaves: OrderedDict[int, tuple[Grammar, dict, dict, dict]] = OrderedDict()
        self._counted: dict[int, tuple] = {}          # id(rule) -> (rule, [(layout, offset)] checked)
        self._layouts: dict[tuple, Layout] = {}
        self._annotations: OrderedDict[bytes, Annotated] = OrderedDict()
        self._referencing = False              # a reference walk is being made (_by_difference)
        self._eos = pack_ids(np.array(sorted(table.eos_ids), np.int64), self.num_words)

    def words(self, matcher: Matcher) -> np.ndarray:
        """int32 [ceil(V/32)]: the tokens whose bytes the matcher accepts, plus EOS once it is complete.
        Read-only: the array is the cached mask."""
        key = (id(matcher.grammar), matcher.configs)
        cached = self._masks.get(key)
        if cached is not None and cached[0] is matcher.grammar:
            self._masks.move_to_end(key)
            return cached[1]
        if max(len(self._rules), len(self._forms), len(self._counted)) > self.max_rules:
            self._forget()
        words = self._compute(matcher)
        words.flags.writeable = False
        self._masks[key] = (matcher.grammar, words)
        if len(self._masks) > self.max_masks:
            self._masks.popitem(last=False)
        return words

    def _forget(self) -> None:
        """Drop what is kept per rule, and every walk with it (walks of rules keyed by identity may
        only outlive their rule's entry in _rules if nothing could reuse that identity): a server meeting
        new schemas for days would otherwise keep every rule it ever saw. Called between masks only, so
        no walk is stored under a rule the caches no longer hold. The tokenizer's pinned walks stay."""
        for cache in (self._walks, self._rules, self._native, self._forms, self._counted, self._layouts,
                      self._annotations):
            cache.clear()
        self.forgotten += 1

    def allowed(self, matcher: Matcher) -> np.ndarray:
        """bool [V], the same mask unpacked."""
        return unpack(self.words(matcher), self.table.vocab_size)

    def _compute(self, matcher: Matcher) -> np.ndarray:
        """Each stack's top walk from every token (cached), then what those walks leave at exit
        points followed through the stacks below in one C call (follow_native); without a C
        compiler, walk by walk (_compute_by_walks)."""
        follower = self._follower_of(matcher)
        if follower is None:
            return compute_by_walks(self, matcher)
        words = np.zeros(self.num_words, np.uint32)
        small: list[np.ndarray] = []
        memo = self._leaves_of(matcher)[1]
        rules, flat = matcher.grammar.rules, self.trie.flat
        configs = list(matcher.configs)
        seeds: list[int] = []
        for i, config in enumerate(configs):
            rule, state = config[-1]
            w = memo.get((rule, state, TOP))
            if w is None:
                if len(memo) > self.max_walks:
                    memo.clear()
                w = memo[(rule, state, TOP)] = self._top_walk(rules[rule], state)
            if w is READ:
                seeds += (i, state, READ, ROOT_ADDRESS, 1)
                continue
            if w.words is not None:
                np.bitwise_or(words, w.words, out=words)
            elif len(w.consumed):
                small.append(w.consumed)
            for exit_state, rest in w.exits:
                seeds += (i, exit_state, LEAVE, *rest.global_address(flat))
        if seeds:
            follower.follow(words, configs, seeds)
        if small:
            or_ids(words, np.concatenate(small))
        if matcher.accepting:
            np.bitwise_or(words, self._eos, out=words)
        return words.view(np.int32)

    def _compute_by_walks(self, matcher: Matcher) -> np.ndarray:
        return compute_by_walks(self, matcher)

    def _top_walk(self, rule: Rule, state: int) -> Walk | int:
        """A stack's top walk from every token: the cached walk where there is one, a new one where
        the state is wide or counted (first_byte_split and counted_walk reuse shared walks), else
        READ: the C follow reads the trie from the root with the stack itself, which for the few
        first bytes of a narrow state costs less than making a walk to cache. A narrow state of a rule
        keyed by identity has no walk to find (only wide, counted and reference states are walked
        from every token), so it reads at once, without the rule's key."""
        narrow = np.count_nonzero(rule.dfa.trans[state] >= 0) <= WIDE
        if narrow and not (self.content_keys or rule.dfa._digest is not None) and self._counted_at(rule, state) is None:
            return READ
        content = self._rule_key(rule)[0]
        found = self._cached((ALL.key, content, state))
        if found is not None:
            return found
        if narrow and self._counted_at(rule, state) is None:
            return READ
        return self._walk(rule, state, ALL)

    def _walk(self, rule: Rule, state: int, tails: Tails) -> Walk:
        content, exits = self._rule_key(rule)
        key = (tails.key, content, state)
        found = self._cached(key)
        if found is None:
            trans = rule.dfa.trans
            counted = self._counted_at(rule, state)
            if counted is not None:
                layout, offset, c = counted
                found = counted_walk(self._annotated(tails), layout, offset, c, self.num_words, ids=tails is not ALL)
            elif tails is ALL and np.count_nonzero(trans[state] >= 0) > WIDE:
                found = self._by_difference(rule, state) or self._by_form(rule, state)
            else:
                found = walk(self.trie, self.num_words, trans, exits, state, tails)
            self._store(key, found)
        return found

    def _by_difference(self, rule: Rule, state: int) -> Walk | None:
        """A wide state's walk as the walk of the state most tokens' first bytes lead to, put right
        where runs from the two differ (difference_walk); None where that state is itself, holds
        under a quarter of the tokens, or the runs differ in too many places."""
        if self._referencing:
            return None
        trans_at, exits_at = self._addresses(rule)
        major = reference_state(self.trie, trans_at, state)
        if major is None or major[0] == state or major[1] < len(self.trie.ids) // 4:
            return None
        g = major[0]
        found = differences(self.trie, trans_at, state, g, DIFFERENCES)
        if found is None:
            return None
        self._referencing = True
        try:
            reference = self._walk(rule, g, ALL)
        finally:
            self._referencing = False
        return corrected(self.trie, self.num_words, exits_at, reference, found)

    def _by_form(self, rule: Rule, state: int) -> Walk:
        """A wide state's walk from every token as the walk of its reachable form, where a rule
        that goes on the same way from there made it (the building blocks' are pinned per tokenizer:
        the string body of every object's other keys), else put together by first_byte_split and
        kept under its form too."""
        form = self._form(rule, state)
        if form is not None:
            w = self._cached((ALL.key, form[0]))
            if w is not None:
                old = form[3]
                if w.hits is None:
                    w.hits = []                    # filled once, by whichever copy a difference walk reads
                return Walk(w.consumed, w.words, [(int(old[e]), rest) for e, rest in w.exits], w.by_first_byte, w.hits)
        found = first_byte_split(self.trie, self.num_words, rule.dfa.trans, self._rule_key(rule)[1], state,
                                 lambda t, rest: (self._walk_form(rule, t, rest) if rest.key == AFTER_FIRST_BYTE
                                                  else self._walk(rule, t, rest)))
        if form is not None:
            new = {int(o): i for i, o in enumerate(form[3].tolist())}
            found.hits = []
            self._store((ALL.key, form[0]), Walk(found.consumed, found.words, [(new[e], rest) for e, rest in found.exits],
                                                 found.by_first_byte, found.hits))
        return found

    def _counted_at(self, rule: Rule, state: int) -> tuple[Layout, int, int] | None:
        """(layout, offset, count) when state is a body boundary of one of the rule's counted
        strings (a plain string's body walks as any state does: its walks are the blocks')."""
        found = self._counted.get(id(rule))
        if found is None or found[0] is not rule:
            exits = self._rule_key(rule)[1] if rule.dfa.counted else None
            blocks = []
            for offset, lo, hi in rule.dfa.counted:
                if (lo, hi) != (0, None):
                    layout = self._layouts.get((lo, hi)) or self._layouts.setdefault((lo, hi), Layout.of(lo, hi))
                    if layout.fits(rule.dfa, exits, offset):
                        blocks.append((layout, offset))
            found = self._counted[id(rule)] = (rule, blocks)
        for layout, offset in found[1]:
            c = layout.count_at(state - offset)
            if c is not None:
                return layout, offset, c
        return None

    def _annotated(self, tails: Tails) -> Annotated:
        """The plain string body's walk from tails, with character counts (counted_walks)."""
        plain, from_all = plain_string(self.table)
        if tails is ALL:
            return from_all
        found = self._annotations.get(tails.key)
        if found is None:
            found = self._annotations[tails.key] = annotate(self.trie, self.table, self.num_words, plain, tails)
            if len(self._annotations) > self.max_walks:
                self._annotations.popitem(last=False)
        else:
            self._annotations.move_to_end(tails.key)
        return found

    def _walk_form(self, rule: Rule, state: int, tails: Tails) -> Walk:
        """The walk from a state's reachable form (token_walk.reachable_form), numbered back."""
        form = self._form(rule, state)
        if form is None:
            return self._walk(rule, state, tails)
        content, trans, exits, old = form
        w = self._cached((tails.key, content))
        if w is None:
            w = walk(self.trie, self.num_words, trans, exits, 0, tails)
            self._store((tails.key, content), w)
        return Walk(w.consumed, w.words, [(int(old[e]), rest) for e, rest in w.exits], w.first_byte_index(self.trie))

    def _form(self, rule: Rule, state: int) -> tuple | None:
        """The state's reachable form (token_walk.reachable_form), made once per rule and state."""
        found = self._forms.get((id(rule), state))
        if found is None or found[0] is not rule:
            found = self._forms[(id(rule), state)] = (rule, reachable_form(rule.dfa.trans, self._rule_key(rule)[1], state))
        return found[1]

    def _cached(self, key: tuple) -> Walk | None:
        found = self._walks.get(key)
        if found is not None:
            self._walks.move_to_end(key)
            return found
        return self.table.block_walks.get(key)

    def _store(self, key: tuple, found: Walk) -> None:
        self._walks[key] = found
        if len(self._walks) > self.max_walks:
            self._walks.popitem(last=False)

    def walk_rule(self, rule: Rule) -> None:
        """Walk the whole vocabulary from every state of the rule (block_walks' warm-up)."""
        for state in range(rule.dfa.num_states):
            self._walk(rule, state, ALL)

    def pin_walks(self) -> None:
        """Keep every walk so far with the tokenizer, for all mask computers (block_walks)."""
        self.table.block_walks.update(self._walks)

    def _rule_key(self, rule: Rule) -> tuple[bytes, np.ndarray]:
        """The key of the rule's automaton and exit points, and the exit points: states where a call
        or a return may happen. An automaton whose content hash is known (the building blocks',
        hashed at the warm-up with content_keys, and those the compile hashed) is keyed by content,
        so equal rules of any schema share walks; any other by identity, which needs no pass over
        its table (~40 µs for 40 states, ~0.5 ms for 256, at a rule's first mask): walks of its wide
        states are still shared by their reachable forms (_by_form). The rule is kept with its key
        (in _rules), so an identity is never reused while walks keyed by it live."""
        found = self._rules.get(id(rule))
        if found is None or found[0] is not rule:
            exits = rule.dfa.accept.copy()
            exits[np.fromiter(rule.calls, np.intp, len(rule.calls))] = True
            dfa = rule.dfa
            named = dfa.digest() if self.content_keys else dfa._digest
            head = b"\0" + named if named is not None else b"\1%d" % id(dfa)
            content = hashlib.blake2b(head + exits.tobytes(), digest_size=16).digest()
            found = self._rules[id(rule)] = (rule, content, exits)
        return found[1:]

    def _addresses(self, rule: Rule) -> tuple[int, int]:
        """The addresses of the rule's int32 table and of its exit points as bytes, for the C
        difference walk (kept with the arrays they point into)."""
        found = self._native.get(id(rule))
        if found is None or found[0] is not rule:
            exits = self._rule_key(rule)[1]
            trans = np.ascontiguousarray(rule.dfa.trans, np.int32)
            found = self._native[id(rule)] = (rule, trans, exits, address(trans), address(exits))
        return found[3:]

    def _follower_of(self, matcher: Matcher) -> Follower | None:
        """The grammar's C follow (follow_native), made at its first mask; None without a C compiler."""
        store = self._leaves_of(matcher)[2]
        if "follower" not in store:
            store["follower"] = Follower(matcher.grammar, self.trie.flat, MAX_DEPTH) if follow_native() else None
        return store["follower"]

    def _leaves_of(self, matcher: Matcher) -> tuple[dict, dict, dict]:
        """Per grammar: (stack, exit state) -> the stacks that go on from there; (rule index, state,
        tails key) -> its walk, the same as _walk's caches but found by one lookup; and its follower."""
        grammar = matcher.grammar
        found = self._leaves.get(id(grammar))
        if found is None or found[0] is not grammar:
            found = self._leaves[id(grammar)] = (grammar, {}, {}, {})
            if len(self._leaves) > 64:
                self._leaves.popitem(last=False)
        self._leaves.move_to_end(id(grammar))
        return found[1:]
