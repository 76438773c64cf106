"""A program (see gateway/api/program.py for its segments) run inside the local engine, with no
client round trips: the chat prompt is rendered with the generation prompt, so the token prefix
ends where the assistant turn begins, and each segment extends that prefix.

    text    its tokens are appended
    gen     one generate call on prompt_token_ids = the prefix so far, with the gen's own stop,
            max_tokens, temperature and constraint; its output tokens are appended
    select  every choice scored after the exact prefix ids (gateway/engine/scoring.py: its own ids
            appended, the mean log-probability of its tokens by default, or the segment's
            `normalize`: sum | first_token); the best (the first on a tie) is appended, and the
            scores come back in the last Delta's `scores`, in the order of the choices

Invariant: the prefix is the exact token sequence the engine computed (generated ids are appended
as generated, never re-tokenized from text), so each call finds everything before it in the radix
tree and prefills only the text appended since. Only where a stop string cut a gen's text inside
a token is the cut-off tail re-tokenized.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gateway.engine.scoring import normalized, score_choices
from gateway.protocol import BackendUnavailable, Constraint, Delta, GenerateRequest, InvalidRequest, Usage
from gateway.structured.constraint import PARAMS, compile_constraint

if TYPE_CHECKING:
    from gateway.engine.engine import Engine


def segment_constraint(seg: dict) -> tuple[str, Constraint] | None:
    """(the segment's key naming it, the constraint) of a gen, or None for a free gen or a select."""
    if seg.get("regex") is not None:
        return "regex", Constraint("regex", seg["regex"])
    if seg.get("json_schema") is not None:
        return "json_schema", Constraint("json_schema", {"schema": seg["json_schema"], "strict": False})
    if seg.get("choices") is not None:
        return "choices", Constraint("choice", seg["choices"])
    return None


def check_constraints(program: list[dict]) -> list[Constraint | None]:
    """Compile every segment's constraint before the first token goes out (compiles are cached), so
    a constraint we cannot enforce is a 400 naming its segment, not an error mid-turn."""
    out = []
    for i, seg in enumerate(program):
        found = None if "text" in seg or "select" in seg else segment_constraint(seg)
        if found is not None:
            key, constraint = found
            try:
                compile_constraint(constraint)
            except InvalidRequest as err:
                inner = (err.param or "").removeprefix(PARAMS[constraint.kind])
                raise InvalidRequest(f"program[{i}].{key}: {err}", f"program[{i}].{key}{inner}") from None
        out.append(found[1] if found else None)
    return out


async def run_program(engine: Engine, req: GenerateRequest) -> AsyncIterator[Delta]:
    """The Deltas of one assistant turn filled by `req.program`: text as each segment produces it,
    then a last Delta with the fields by name and the usage summed over the generate calls."""
    program = req.program or []
    if req.n != 1:
        raise InvalidRequest("a program fills one assistant turn; n must be 1", "n")
    constraints = await asyncio.to_thread(check_constraints, program)
    prefix = await asyncio.to_thread(engine._prompt_ids, req)
    tokenizer = engine.tokenizer
    fields: dict[str, str] = {}
    scores: dict[str, list[float]] = {}
    total = Usage()
    for i, (seg, constraint) in enumerate(zip(program, constraints)):
        if "text" in seg:
            ids = tokenizer.encode(seg["text"])
            prefix += ids
            if seg["text"]:
                yield Delta(0, seg["text"], ids)
            continue
        if "select" in seg:
            choice, ids, scores[seg["select"]] = await _select(engine, req, prefix, seg, total)
            fields[seg["select"]] = choice
            prefix += ids
            yield Delta(0, choice, ids)
            continue
        sub = GenerateRequest(f"{req.request_id}/program{i}", _params(req, seg), prompt_token_ids=list(prefix),
                              constraint=constraint, namespace=req.namespace, model=req.model)
        text, ids, finish = "", [], None
        async for d in engine.generate(sub):
            text += d.text
            ids += d.token_ids
            finish = d.finish_reason or finish
            if d.usage is not None:
                total.prompt_tokens += d.usage.prompt_tokens
                total.completion_tokens += d.usage.completion_tokens
                total.cached_tokens += d.usage.cached_tokens
            if d.text:
                yield Delta(0, d.text, d.token_ids)
        if finish == "abort":
            yield Delta(0, finish_reason="abort", usage=total, fields=fields, scores=scores or None)
            return
        fields[seg["gen"]] = text
        prefix += _turn_tokens(engine, sub, text, ids)
    yield Delta(0, finish_reason="stop", usage=total, fields=fields, scores=scores or None)


async def _select(engine: Engine, req: GenerateRequest, prefix: list[int], seg: dict,
                  total: Usage) -> tuple[str, list[int], list[float]]:
    """(the best choice, its ids, every choice's score), the scoring's tokens added to `total`."""
    if not engine._thread.is_alive():
        raise BackendUnavailable("the local engine is not running")
    choices = [engine.tokenizer.encode(c) for c in seg["choices"]]
    scored = await asyncio.to_thread(engine.call, lambda: score_choices(engine, req.namespace, list(prefix), choices))
    total.prompt_tokens += scored.prompt_tokens
    total.cached_tokens += scored.cached_tokens
    scores = [normalized(lps, seg.get("normalize", "mean")) for lps in scored.logprobs]
    best = scores.index(max(scores))
    return seg["choices"][best], choices[best], scores


def _params(req: GenerateRequest, seg: dict):
    base = req.params
    temperature = seg["temperature"] if seg["temperature"] is not None else base.temperature
    max_tokens = seg["max_tokens"] if seg["max_tokens"] is not None else base.max_tokens
    return dataclasses.replace(base, max_tokens=max_tokens, temperature=temperature, stop=list(seg["stop"]),
                               logprobs=False, top_logprobs=0)


def _turn_tokens(engine: Engine, sub: GenerateRequest, text: str, ids: list[int]) -> list[int]:
    """The ids that continue the prefix with a gen's text: its generated ids without the stop token
    that ended it, cut where a stop string cut the text (the tail re-tokenized if it falls inside a
    token)."""
    tokenizer = engine.tokenizer
    ending = frozenset(sub.params.stop_token_ids) | (frozenset() if sub.params.ignore_eos else tokenizer.eos_token_ids)
    if ids and ids[-1] in ending:
        ids = ids[:-1]
    skip = sub.params.skip_special_tokens
    k = len(ids)
    while k and not text.startswith(tokenizer.decode(ids[:k], skip_special_tokens=skip)):
        k -= 1
    return ids[:k] + tokenizer.encode(text[len(tokenizer.decode(ids[:k], skip_special_tokens=skip)):])
