"""Select scoring on a CUDA device, with the Triton attention backend and decode CUDA graphs
captured: the scores equal the torch reference backend's and HF transformers' (fp32), and an
SDK program with selects and a fork runs through the server while decodes replay graphs.
Skipped where there is no GPU; run through the device machine:

    ./scripts/test tests/sdk/test_scoring_gpu.py
"""
from __future__ import annotations

import pytest
import torch

from gateway.engine.engine import Engine
from gateway.engine.scoring import score_choices
from sdk import RadixGate, assistant, function, gen, select, system, user
from tests.sdk.conftest import reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def gpu_engines(tiny_qwen3_dir):
    made = {attention: Engine(tiny_qwen3_dir, name="tiny-qwen3", device="cuda", dtype="float32", kv_slots=8192,
                              max_running=16, max_context=1024, attention=attention, chunk_tokens=64,
                              debug_checks=True)
            for attention in ("triton", "torch")}
    yield made
    for e in made.values():
        e.shutdown()


def test_gpu_scores_equal_the_references(gpu_engines, hf_model):
    tok = gpu_engines["triton"].tokenizer
    prefix = tok.encode_chat([{"role": "user", "content": "Name a colour. " * 20}]) + tok.encode("It is ")
    choices = [tok.encode(c) for c in ("red", "light blue", "a very dark green", "purple-ish grey")]
    got = {a: e.call(lambda e=e: score_choices(e, "gpu", prefix, choices)).logprobs for a, e in gpu_engines.items()}
    expected = [reference(hf_model, prefix, c) for c in choices]
    for attention, per_choice in got.items():
        for ours, theirs in zip(per_choice, expected):
            assert ours == pytest.approx(theirs, abs=5e-3), attention      # Triton dots may run in tf32


def test_an_sdk_program_on_the_gpu_engine(gpu_engines, live_server):
    base = live_server(gpu_engines["triton"])

    @function
    def prog(s):
        s += system("Be brief.")
        s += user("Pick and explain.")
        branches = s.fork(4)
        for i, b in enumerate(branches):
            b += f"Option {i}: " + select("pick", ["left", "right", "straight on"]) + ". Why: " + gen("why", max_tokens=8)
        s.join(branches)
        s += user("Now decide.")
        s += assistant(select("final", ["go", "stay"]))

    state = prog.run(backend=RadixGate(base, temperature=0)).check()
    assert len(state["pick"]) == 4 and all(len(s) == 3 for s in state.scores["pick"])
    assert state["final"] in ("go", "stay")
