"""engine/scoring.py on its own: scores do not depend on the radix cache, on how many request rows
are free or on the chunk size (the prefix and the choices then go in several forwards), every slot
is accounted for afterwards, and the prefix stays cached for the turn that continues."""
from __future__ import annotations

import pytest

from gateway.engine.engine import Engine
from gateway.engine.scoring import normalized, score_choices

NS = "scoring-test"                 # a cache namespace of its own on the shared engine


@pytest.fixture
def engines(tiny_qwen3_dir, tiny_engine):
    made = {name: Engine(tiny_qwen3_dir, name="tiny-qwen3", device="cpu", dtype="float32", kv_slots=4096,
                         max_running=rows, max_context=1024, radix=radix, chunk_tokens=chunk, debug_checks=True)
            for name, rows, radix, chunk in (("two_rows_chunks_of_4", 2, True, 4), ("uncached", 256, False, 2048))}
    yield {"cached": tiny_engine, **made}
    for e in made.values():
        e.shutdown()


def flat(per_choice: list[list[float]]) -> list[float]:
    return [x for lp in per_choice for x in lp]


def idle_slots_accounted(e: Engine) -> bool:
    pool = e.runner.pool
    e.call(lambda: e.scheduler.check_integrity())
    return pool.available + e.cache.total_size == pool.num_slots - 1


def test_scores_are_the_same_whatever_the_cache_and_rows(engines):
    tok = engines["cached"].tokenizer
    prefix = tok.encode_chat([{"role": "user", "content": "Name a colour."}]) + tok.encode("It is ")
    choices = [tok.encode(c) for c in ("red", "light blue", "a very dark green", "x", "purple-ish grey")]
    results = {}
    for name, e in engines.items():
        first = e.call(lambda e=e: score_choices(e, NS, prefix, choices))
        again = e.call(lambda e=e: score_choices(e, NS, prefix, choices))      # now with the prefix cached
        assert flat(again.logprobs) == pytest.approx(flat(first.logprobs), abs=1e-4)
        assert again.cached_tokens == (len(prefix) - 1 if e.cache.enabled else 0)
        assert first.prompt_tokens == len(prefix) + sum(len(c) - 1 for c in choices)
        results[name] = first.logprobs
        assert idle_slots_accounted(e)
        if e.cache.enabled:
            assert e.call(lambda e=e: e.cache.match_prefix(NS, prefix).length) == len(prefix)
    assert [len(lp) for lp in results["cached"]] == [len(c) for c in choices]
    for name in ("two_rows_chunks_of_4", "uncached"):
        assert [len(lp) for lp in results[name]] == [len(c) for c in choices]
        assert flat(results[name]) == pytest.approx(flat(results["cached"]), abs=1e-4), name


def test_normalisations():
    assert normalized([-1.0, -3.0], "mean") == -2.0
    assert normalized([-1.0, -3.0], "sum") == -4.0
    assert normalized([-1.0, -3.0], "first_token") == -1.0
