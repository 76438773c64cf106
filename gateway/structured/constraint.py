"""A request's Constraint -> its Grammar, compiled once per distinct spec and cached.

Specs by kind: `regex` a pattern string (the whole output must match); `choice` a list of strings;
`json_object` none; `json_schema` {"schema": ..., "strict": bool}. A spec we cannot enforce exactly
raises InvalidRequest naming the parameter and the keyword, never a weaker grammar.
"""
from __future__ import annotations

import gc
import json
from functools import lru_cache

from gateway.protocol import Constraint, InvalidRequest
from gateway.structured.grammar import Grammar

PARAMS = {"regex": "regex", "choice": "choices", "json_object": "response_format",
          "json_schema": "response_format.json_schema.schema"}


def compile_constraint(constraint: Constraint) -> Grammar:
    if constraint.kind not in PARAMS:
        raise InvalidRequest(f"unknown constraint kind {constraint.kind!r}", "response_format")
    paused = gc.isenabled()        # a compile makes many small objects and no cycles to collect:
    gc.disable()                   # collections during it cost ~10% of it for nothing
    try:
        return _compile(constraint.kind, json.dumps(constraint.spec))   # key order matters: properties
    except InvalidRequest:
        raise
    except RecursionError:
        raise InvalidRequest("the schema nests too deeply", PARAMS[constraint.kind]) from None
    except ValueError as err:                    # UnsupportedRegex, UnsupportedSchema, bad specs
        keyword = getattr(err, "keyword", None)
        param = PARAMS[constraint.kind]
        raise InvalidRequest(f"cannot enforce {param}: {err}", f"{param}.{keyword}" if keyword else param) from None
    finally:
        if paused:
            gc.enable()


@lru_cache(maxsize=512)
def _compile(kind: str, spec_json: str) -> Grammar:
    from gateway.structured.regex import choice_dfa, regex_dfa

    spec = json.loads(spec_json)
    if kind == "regex":
        if not isinstance(spec, str):
            raise InvalidRequest("'regex' must be a string", "regex")
        grammar = Grammar.of(regex_dfa(spec))
    elif kind == "choice":
        if not isinstance(spec, list) or not spec or not all(isinstance(c, str) and c for c in spec):
            raise InvalidRequest("'choices' must be a non-empty list of non-empty strings", "choices")
        grammar = Grammar.of(choice_dfa(spec))
    elif kind == "json_object":
        from gateway.structured.json_schema import json_object_grammar
        grammar = json_object_grammar()
    else:
        from gateway.structured.json_schema import compile_json_schema
        grammar = compile_json_schema(spec["schema"], strict=bool(spec.get("strict")))
    grammar.check()
    return grammar
