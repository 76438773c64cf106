"""Distances to acceptance (what ending validly costs) equal a plain fixed point over all rules."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.protocol import Constraint, InvalidRequest
from gateway.structured.constraint import compile_constraint
from gateway.structured.distances import distances_to_accept

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschemabench" / "schemas"
RECURSIVE = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "string", "minLength": 3},
                                                                 "kids": {"type": "array", "items": {"$ref": "#/$defs/node"},
                                                                          "minItems": 1}},
                                "required": ["v"]}},
             "anyOf": [{"$ref": "#/$defs/node"}, {"type": "integer", "minimum": 100000}]}


def fixed_point(rules) -> list[np.ndarray]:
    """Every rule relaxed one byte further per pass until nothing changes."""
    dist = [np.where(r.dfa.accept, 0.0, np.inf) for r in rules]
    changed = True
    while changed:
        changed = False
        for r, rule in enumerate(rules):
            trans, d = rule.dfa.trans, dist[r]
            best = np.minimum(d, np.where(trans >= 0, d[np.maximum(trans, 0)] + 1, np.inf).min(axis=1))
            for state, targets in rule.calls.items():
                for callee, ret in targets:
                    best[state] = min(best[state], dist[callee][0] + best[ret])
            if (best < d).any():
                dist[r], changed = best, True
    return dist


def schemas() -> list[dict]:
    found = [RECURSIVE, {"type": "string", "minLength": 40, "maxLength": 50}, {"enum": ["", 1, [2, 3]]},
             {"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "items": {"type": "number"}}},
              "required": ["a"]}]
    if SCHEMAS.is_dir():
        found += [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*/*.json"))[::25]]
    return found


@pytest.mark.parametrize("schema", schemas(), ids=lambda s: json.dumps(s)[:40])
def test_distances_equal_the_fixed_point(schema):
    try:
        grammar = compile_constraint(Constraint("json_schema", {"schema": schema}))
    except InvalidRequest:
        pytest.skip("not compiled")
    got, want = distances_to_accept(grammar.rules), fixed_point(grammar.rules)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
