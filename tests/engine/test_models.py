"""Our model code against transformers' own implementation on the same checkpoint directory."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from gateway.modelgen.builder import make_model
from gateway.modelgen.shapes import PRESETS
from tests.engine.slot_batch import SlotBatch

DECODE_STEPS = 32


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def workload(vocab: int):
    """A ragged batch of prompts (the last one prefilled in two chunks), then random decode tokens."""
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(vocab, (n,), generator=gen) for n in (1, 7, 23, 40)]
    return prompts, torch.randint(vocab, (DECODE_STEPS, len(prompts)), generator=gen)


def run_ours(path, dtype, device="cpu") -> list[torch.Tensor]:
    """Logits of every position of every sequence, reading all earlier K/V from the slot pool."""
    ours = SlotBatch(path, dtype=dtype, device=device)
    prompts, steps = workload(ours.cfg.vocab_size)
    seqs = [ours.add() for _ in prompts]
    first = ours.extend({s: p[:-15] if s == 3 else p for s, p in zip(seqs, prompts)})
    first[3] = torch.cat([first[3], ours.extend({3: prompts[3][-15:]})[3]])   # a chunk over a cached prefix
    logits = [first[s] for s in seqs]
    for tokens in steps:
        got = ours.extend({s: tokens[s:s + 1] for s in seqs})
        logits = [torch.cat([logits[s], got[s]]) for s in seqs]
    return logits


@torch.inference_mode()
def run_transformers(path, dtype, device="cpu") -> list[torch.Tensor]:
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="eager").eval().to(device)
    prompts, steps = workload(hf.config.vocab_size)
    steps = steps.to(device)
    logits = []
    for s, prompt in enumerate(prompts):
        out = hf(prompt[None].to(device), use_cache=True)
        seq, cache = [out.logits[0].float()], out.past_key_values
        for tokens in steps:
            out = hf(tokens[s].view(1, 1), past_key_values=cache, use_cache=True)
            seq.append(out.logits[0].float())
            cache = out.past_key_values
        logits.append(torch.cat(seq).cpu())
    return logits


def worst_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(rel_err(x, y) for seq_a, seq_b in zip(a, b) for x, y in zip(seq_a, seq_b))


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "llama-bias", "mistral"])
def test_logits_match_transformers_fp32(model_dirs, name):
    assert worst_err(run_ours(model_dirs[name], torch.float32), run_transformers(model_dirs[name], torch.float32)) < 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_as_accurate_as_transformers(model_dirs, dtype):
    """In half precision neither implementation is exact; ours must stay as close to the float32
    truth as transformers' own half-precision run does."""
    path = model_dirs["qwen3"]
    truth = run_transformers(path, torch.float32)
    ours, theirs = worst_err(run_ours(path, dtype), truth), worst_err(run_transformers(path, dtype), truth)
    assert ours <= max(1.5 * theirs, 1e-2), (ours, theirs)
    assert all(p.dtype == dtype for p in SlotBatch(path, dtype=dtype).model.parameters())


def test_sharded_checkpoint_loads_the_same(model_dirs, tmp_path):
    sharded = make_model(PRESETS["tiny-qwen2"], tmp_path / "sharded", tokenizer="trained", shards=3)
    assert len(list(sharded.glob("model-*-of-00003.safetensors"))) == 3
    assert (sharded / "model.safetensors.index.json").is_file()
    ids = torch.arange(2, 30)
    a, b = SlotBatch(model_dirs["qwen2"]), SlotBatch(sharded)
    assert torch.equal(a.extend({a.add(): ids})[0], b.extend({b.add(): ids})[0])


def test_tied_embeddings_share_one_tensor(model_dirs):
    qwen3 = SlotBatch(model_dirs["qwen3"]).model
    assert qwen3.lm_head.weight.data_ptr() == qwen3.model.embed_tokens.weight.data_ptr()
    llama = SlotBatch(model_dirs["llama"]).model
    assert llama.lm_head.weight.data_ptr() != llama.model.embed_tokens.weight.data_ptr()
