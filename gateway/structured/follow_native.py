"""The tails a mask's top walks leave, followed through the stacks below in C, in one call per mask.

A mask starts from each stack's top walk (cached: masks.MaskComputer._walk); what that walk leaves at
an exit point is a set of trie nodes whose tokens must be read on by whatever runs next. Here the
whole of that is done at once, depth-first over the trie: at a node, the stacks reached by calling
or returning (the matcher's closure) each read on from it in their top rule; every token whose last
byte is read sets its bit in the mask, and every exit point reached on the way is left the same way.
Stacks are made of interned frames (rule, state, below), so two stacks are equal when their top
frames are, and a (node, stack) pair reached twice is read on once. This is the matcher's own
semantics (leaving, closure, MAX_DEPTH) on the trie; masks keeps the walk-by-walk Python loop as
its reference and its fallback.

Why: the tails differ from mask to mask (each key position ends a key with other tokens), so walks
of them were mostly new and paid ~50 µs of Python each, plus the loop that follows stacks; here a
node costs a few ns and a mask one call.
"""
from __future__ import annotations

import ctypes
import os
import threading
from itertools import chain

import numpy as np

from gateway.structured.flat_grammar import FlatGrammar, address
from gateway.structured.grammar import Grammar
from gateway.structured.walk_native import compiled

SOURCE = r"""
#include <stdint.h>
#include <string.h>

typedef struct { int32_t child_lo, child_hi, tok; uint16_t ends; uint8_t byte, pad; } Node;
typedef struct { int32_t node, rule, state, below; } Item;
typedef struct { uint32_t stamp; int32_t a, b, c, d, val; } Slot;
enum { LEAVE = 0, READ = 1 };

typedef struct {
    const int64_t *trans;       /* per rule: address of its int32 [states][256] table */
    const int64_t *base;        /* per rule: its state 0 in the per-state arrays */
    const uint8_t *flags;       /* per state: 1 accepting, 2 calls */
    const int32_t *call_off, *call_rule, *call_ret;    /* per state: calls [call_off[g], call_off[g+1]) */
    const Node *nodes; const int64_t *ids;
    uint32_t *words;
    int32_t *f_rule, *f_state, *f_below, *f_len;       /* interned frames */
    Slot *frames, *seen;        /* hash tables of frames (a, b, c) and of visited (node, stack) */
    Item *stack, *closure;
    int64_t f_cap, frames_mask, seen_mask, stack_cap, closure_cap, max_depth;
    int64_t f_n, frames_n, seen_n, top;
    uint32_t stamp;
} Ctx;

static uint64_t mix(int32_t a, int32_t b, int32_t c, int32_t d) {
    uint64_t h = (uint64_t)(uint32_t)a * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)(uint32_t)b * 0xC2B2AE3D27D4EB4Full; h = (h << 31) | (h >> 33);
    h ^= (uint64_t)(uint32_t)c * 0x165667B19E3779F9ull; h = (h << 29) | (h >> 35);
    h ^= (uint64_t)(uint32_t)d * 0x27D4EB2F165667C5ull;
    return h ^ (h >> 29);
}

/* The slot of key (a, b, c, d): *fresh is set when it was not there (and is now). NULL: table full. */
static Slot *find(Ctx *x, Slot *t, int64_t mask, int64_t *n, int32_t a, int32_t b, int32_t c, int32_t d, int *fresh) {
    uint64_t i = mix(a, b, c, d) & mask;
    for (;;) {
        Slot *s = t + i;
        if (s->stamp != x->stamp) {
            if (2 * (*n + 1) > mask) return 0;
            s->stamp = x->stamp; s->a = a; s->b = b; s->c = c; s->d = d; (*n)++;
            *fresh = 1; return s;
        }
        if (s->a == a && s->b == b && s->c == c && s->d == d) { *fresh = 0; return s; }
        i = (i + 1) & mask;
    }
}

static int32_t frame(Ctx *x, int32_t rule, int32_t state, int32_t below) {
    int fresh;
    Slot *s = find(x, x->frames, x->frames_mask, &x->frames_n, rule, state, below, 0, &fresh);
    if (!s) return -1;
    if (fresh) {
        if (x->f_n >= x->f_cap) return -1;
        int32_t f = (int32_t)x->f_n++;
        x->f_rule[f] = rule; x->f_state[f] = state; x->f_below[f] = below;
        x->f_len[f] = 1 + (below >= 0 ? x->f_len[below] : 0);
        s->val = f;
    }
    return s->val;
}

/* Stack (rule, state, below) has just reached `node` at an exit point: every stack its closure
   holds but itself reads on from the node. Returns 0, or -1 when a buffer is full. */
static int leave(Ctx *x, int32_t node, int32_t rule, int32_t state, int32_t below) {
    int fresh;
    if (!find(x, x->seen, x->seen_mask, &x->seen_n, node, rule, state, below, &fresh)) return -1;
    if (!fresh) return 0;                   /* its closure is on the stack already */
    int64_t n = 0;
    x->closure[n++] = (Item){node, rule, state, below};
    int first = 1;
    while (n > 0) {
        Item c = x->closure[--n];
        if (!first) {
            if (x->top >= x->stack_cap) return -1;
            x->stack[x->top++] = c;
        }
        first = 0;
        int64_t g = x->base[c.rule] + c.state;
        int64_t len = 1 + (c.below >= 0 ? x->f_len[c.below] : 0);
        if ((x->flags[g] & 2) && len < x->max_depth) {
            for (int32_t k = x->call_off[g]; k < x->call_off[g + 1]; k++) {
                int32_t f = frame(x, c.rule, x->call_ret[k], c.below);
                if (f < 0) return -1;
                if (!find(x, x->seen, x->seen_mask, &x->seen_n, node, x->call_rule[k], 0, f, &fresh)) return -1;
                if (fresh) {
                    if (n >= x->closure_cap) return -1;
                    x->closure[n++] = (Item){node, x->call_rule[k], 0, f};
                }
            }
        }
        if ((x->flags[g] & 1) && c.below >= 0) {
            int32_t f = c.below;
            if (!find(x, x->seen, x->seen_mask, &x->seen_n, node, x->f_rule[f], x->f_state[f], x->f_below[f], &fresh))
                return -1;
            if (fresh) {
                if (n >= x->closure_cap) return -1;
                x->closure[n++] = (Item){node, x->f_rule[f], x->f_state[f], x->f_below[f]};
            }
        }
    }
    return 0;
}

/* Configs: n_configs stacks of (rule, state) frames, bottom first, at config_off. Seeds: rows of
   (config, state, kind, address of int32 global nodes, count): LEAVE, that config's top rule
   reached those nodes at that exit state (its own walk read on from them); READ, that config reads
   every token below those nodes from that state. Returns 0, or -1 when a buffer is full (the words
   set so far are right: a retry with larger buffers only adds bits). */
int64_t follow(Ctx *x, const int32_t *config_frames, const int64_t *config_off, int64_t n_configs,
               const int64_t *seeds, int64_t n_seeds, int32_t *config_below) {
    if (++x->stamp == 0) {                  /* wrapped: no slot may look current */
        memset(x->frames, 0, (x->frames_mask + 1) * sizeof(Slot));
        memset(x->seen, 0, (x->seen_mask + 1) * sizeof(Slot));
        x->stamp = 1;
    }
    x->f_n = 0; x->frames_n = 0; x->seen_n = 0; x->top = 0;
    for (int64_t i = 0; i < n_configs; i++) {
        int32_t below = -1;
        for (int64_t j = config_off[i]; j + 1 < config_off[i + 1]; j++) {
            below = frame(x, config_frames[2 * j], config_frames[2 * j + 1], below);
            if (below < 0) return -1;
        }
        config_below[i] = below;
    }
    for (const int64_t *seed = seeds; seed < seeds + 5 * n_seeds; seed += 5) {
        int64_t i = seed[0];
        int32_t rule = config_frames[2 * (config_off[i + 1] - 1)], state = (int32_t)seed[1];
        const int32_t *roots = (const int32_t *)seed[3];
        for (int64_t r = 0; r < seed[4]; r++) {
            const Node *nd = x->nodes + roots[r];
            if (nd->child_lo == nd->child_hi) continue;
            if (seed[2] == LEAVE) {
                if (leave(x, roots[r], rule, state, config_below[i]) != 0) return -1;
            } else {
                if (x->top >= x->stack_cap) return -1;
                x->stack[x->top++] = (Item){roots[r], rule, state, config_below[i]};
            }
        }
        while (x->top > 0) {
            Item it = x->stack[--x->top];
            const Node *nd = x->nodes + it.node;
            const int32_t *row = (const int32_t *)x->trans[it.rule] + (int64_t)it.state * 256;
            const uint8_t *flags = x->flags + x->base[it.rule];
            for (int32_t c = nd->child_lo; c < nd->child_hi; c++) {
                const Node *child = x->nodes + c;
                int32_t t = row[child->byte];
                if (t < 0) continue;
                for (int32_t e = 0; e < child->ends; e++) {
                    int64_t id = x->ids[child->tok + e];
                    x->words[id >> 5] |= 1u << (id & 31);
                }
                if (child->child_lo == child->child_hi) continue;
                if (x->top >= x->stack_cap) return -1;
                x->stack[x->top++] = (Item){c, it.rule, t, it.below};
                if ((flags[t] & 3) && leave(x, c, it.rule, t, it.below) != 0) return -1;
            }
        }
    }
    return 0;
}
"""

_PTR = ctypes.c_void_p
_I64 = ctypes.c_int64


class Ctx(ctypes.Structure):
    _fields_ = [(name, _PTR) for name in ("trans", "base", "flags", "call_off", "call_rule", "call_ret", "nodes",
                                          "ids", "words", "f_rule", "f_state", "f_below", "f_len", "frames",
                                          "seen", "stack", "closure")] + \
               [(name, _I64) for name in ("f_cap", "frames_mask", "seen_mask", "stack_cap", "closure_cap",
                                          "max_depth", "f_n", "frames_n", "seen_n", "top")] + \
               [("stamp", ctypes.c_uint32)]


LEAVE, READ = 0, 1           # seed kinds
ROOT = np.zeros(1, np.int32)  # the trie's root as a global node: READ from it reads every token
SLOT = np.dtype([("stamp", "<u4"), ("a", "<i4"), ("b", "<i4"), ("c", "<i4"), ("d", "<i4"), ("val", "<i4")])
ITEM = np.dtype([("node", "<i4"), ("rule", "<i4"), ("state", "<i4"), ("below", "<i4")])

_dll: list = []


def native() -> ctypes.CDLL | None:
    if not _dll:
        dll = None if os.environ.get("RADIXGATE_NUMPY_WALK") else compiled(SOURCE, "follow")
        if dll is not None:
            dll.follow.restype = _I64
            dll.follow.argtypes = [_PTR, _PTR, _PTR, _I64, _PTR, _I64, _PTR]
        _dll.append(dll)
    return _dll[0]


class Buffers:
    """One thread's frames, hash tables and stacks (grown when a mask overflows them), and the
    stamp that marks which hash slots belong to the current call."""

    def __init__(self, n: int = 4096):
        self.n = n
        self.f = [np.empty(n, np.int32) for _ in range(4)]
        self.frames, self.seen = np.zeros(2 * n, SLOT), np.zeros(8 * n, SLOT)
        self.stack, self.closure = np.empty(16 * n, ITEM), np.empty(n, ITEM)
        self.below = np.empty(n, np.int32)
        self.stamp = 0
        self.frames_in, self.off_in, self.seeds_in = (np.zeros(0, np.int32), np.zeros(1, np.int64),
                                                      np.zeros(0, np.int64))
        self.inputs(0, 0, 0)
        self.ctx = Ctx(*(address(a) for a in (*[ROOT] * 9, *self.f, self.frames, self.seen, self.stack, self.closure)),
                       n, len(self.frames) - 1, len(self.seen) - 1, len(self.stack), len(self.closure), 0, 0, 0, 0, 0, 0)

    def inputs(self, frames: int, configs: int, seeds: int) -> None:
        """Room for one call's configs and seeds (kept between calls, and so are their addresses)."""
        if frames > len(self.frames_in) or configs + 1 > len(self.off_in) or seeds > len(self.seeds_in) \
                or not hasattr(self, "addresses"):
            self.frames_in = np.empty(max(2 * frames, 4096), np.int32)
            self.off_in = np.zeros(max(2 * configs + 1, 256), np.int64)
            self.seeds_in = np.empty(max(2 * seeds, 1024), np.int64)
            self.below = np.empty(max(len(self.below), len(self.off_in)), np.int32)
            self.addresses = [address(a) for a in (self.frames_in, self.off_in, self.seeds_in, self.below)]


_local = threading.local()


class Follower:
    """follow() for one grammar over a trie (walk_native.FlatTrie)."""

    def __init__(self, grammar: Grammar, flat_trie, max_depth: int):
        self.grammar = g = FlatGrammar(grammar)
        self.trie = flat_trie
        self.max_depth = max_depth
        self._fields = [address(a) for a in (g.trans, g.base, g.flags, g.call_off, g.call_rule, g.call_ret)] + \
            [flat_trie.arrays[1], flat_trie.arrays[2]]

    def _ctx_for(self, buf: Buffers) -> Ctx:
        """The thread's call context (kept with its buffers, whose addresses it holds), pointed at
        this grammar and trie: each thread fills its own, so followers may be shared by threads."""
        ctx = buf.ctx
        (ctx.trans, ctx.base, ctx.flags, ctx.call_off, ctx.call_rule, ctx.call_ret, ctx.nodes, ctx.ids) = self._fields
        ctx.max_depth = self.max_depth
        return ctx

    def follow(self, words: np.ndarray, configs: list, seeds: list[int]) -> None:
        """OR into words (uint32, in place) every token the seeds' nodes read on to the end of."""
        dll = native()
        frames = list(chain.from_iterable(chain.from_iterable(configs)))
        buf = getattr(_local, "buffers", None) or Buffers()
        buf.inputs(len(frames), len(configs), len(seeds))
        buf.frames_in[:len(frames)] = frames
        np.cumsum([len(c) for c in configs], out=buf.off_in[1:len(configs) + 1])
        buf.seeds_in[:len(seeds)] = seeds
        while True:
            ctx = self._ctx_for(buf)
            ctx.words, ctx.stamp = address(words), buf.stamp
            frames_at, off_at, seeds_at, below_at = buf.addresses
            rc = dll.follow(ctypes.byref(ctx), frames_at, off_at, len(configs), seeds_at, len(seeds) // 5, below_at)
            buf.stamp = ctx.stamp
            if rc == 0:
                break
            grown = Buffers(max(4 * buf.n, 64))
            grown.inputs(len(frames), len(configs), len(seeds))
            grown.frames_in[:len(frames)], grown.seeds_in[:len(seeds)] = frames, seeds
            grown.off_in[:len(configs) + 1] = buf.off_in[:len(configs) + 1]
            buf = grown
        _local.buffers = buf
