"""The JSON building blocks' token walks, computed once per tokenizer and kept with its TokenTable.

Every schema's strings, numbers, literals, formats and free-form values and keys are made of the
same few automata (json_blocks, json_strings, json_formats), and walks are keyed by automaton
content, so their walks from every state are worked out here once and shared by every schema,
request and mask computer of the tokenizer; a schema pays only for what it adds. The blocks'
automata themselves stay pinned in json_cache, so a schema's compile composes them too.
"""
from __future__ import annotations

import time

from gateway.structured import json_cache
from gateway.structured.counted_walks import plain_string
from gateway.structured.json_schema import compile_json_schema
from gateway.structured.json_strings import lifted_count
from gateway.structured.json_text import FORMATS, MAX_COUNT
from gateway.structured.masks import MaskComputer
from gateway.structured.tokens import TokenTable

BLOCKS = [{"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}, {"type": "null"},
          {}, {"type": "object"}, {"type": "array"}, {"type": "object", "properties": {"key": {}}},
          *({"type": "string", "format": name} for name in sorted(FORMATS))]


def warm_blocks(table: TokenTable) -> float:
    """Fill table.block_walks (once); the seconds it took."""
    if table.block_walks:
        return 0.0
    start = time.perf_counter()
    masks = MaskComputer(table, content_keys=True)
    for schema in BLOCKS:
        for rule in compile_json_schema(schema).rules:
            masks.walk_rule(rule)
    masks.pin_walks()
    plain_string(table)
    lifted_count(0, MAX_COUNT)           # counted strings are cut from its tables (json_text.count_dfa)
    json_cache.pin()
    return time.perf_counter() - start
