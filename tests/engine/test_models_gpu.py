"""The same checks on a CUDA device, plus loading a 1B-parameter checkpoint straight onto the GPU.
Skipped where there is no GPU; run through the device machine."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch

from gateway.engine.attention import TorchAttention
from gateway.engine.kv_pool import KVPool
from gateway.engine.models import ModelConfig, load_model
from tests.engine.test_models import run_ours, run_transformers, worst_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "mistral"])
def test_fp32_on_gpu_matches_transformers(model_dirs, name):
    path = model_dirs[name]
    assert worst_err(run_ours(path, torch.float32, "cuda"), run_transformers(path, torch.float32, "cuda")) < 1e-4


def test_bf16_on_gpu_as_accurate_as_transformers(model_dirs):
    path = model_dirs["qwen3"]
    truth = run_transformers(path, torch.float32, "cuda")
    ours = worst_err(run_ours(path, torch.bfloat16, "cuda"), truth)
    theirs = worst_err(run_transformers(path, torch.bfloat16, "cuda"), truth)
    assert ours <= max(1.5 * theirs, 1e-2), (ours, theirs)


def anon_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_1b_checkpoint_loads_onto_gpu_without_a_cpu_copy(tmp_path, capfd):
    path = tmp_path / "llama-3.2-1b"
    subprocess.run([sys.executable, "-m", "gateway.cli", "make-model", str(path), "--preset", "llama-3.2-1b",
                    "--dtype", "bfloat16", "--tokenizer", "trained", "--shards", "2"], check=True, timeout=600)
    ckpt_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    cfg = ModelConfig.from_dir(path)
    device = torch.device("cuda")
    torch.zeros(1, device=device)                       # CUDA context outside the measurement
    base, peak, done = anon_rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anon_rss() - base)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    pool = KVPool(cfg.num_layers, 64, cfg.num_kv_heads, cfg.head_dim, torch.bfloat16, device)
    backend = TorchAttention(pool)
    model = load_model(path, cfg, backend, device, torch.bfloat16)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    assert "loading weights" in capfd.readouterr().err, "a >1 GB checkpoint shows a progress bar"
    with capfd.disabled():
        print(f"\n1B load: {ckpt_bytes / 1e9:.2f} GB in {seconds:.1f} s, host anon RSS peak +{peak[0] / 1e6:.0f} MB")
    assert peak[0] < 0.25 * ckpt_bytes, f"host memory grew by {peak[0] / 1e6:.0f} MB while loading"
    assert all(p.device.type == "cuda" and p.dtype == torch.bfloat16 for p in model.parameters())


def test_engine_on_gpu_generates_what_transformers_generates(model_dirs):
    from transformers import AutoModelForCausalLM

    from gateway.engine.engine import Engine
    from gateway.protocol import GenerateRequest, SamplingParams
    from tests.engine.test_engine import GREEDY, assert_no_leak, prompts_with_shared_prefixes, run_all

    path = model_dirs["qwen3"]
    engine = Engine(path, device="cuda", dtype="float32", chunk_tokens=16, kv_slots=4096, debug_checks=True)
    prompts = prompts_with_shared_prefixes(engine.runner.cfg.vocab_size, 12)
    reqs = [GenerateRequest(f"g{i}", SamplingParams(max_tokens=10, **GREEDY), prompt_token_ids=p)
            for i, p in enumerate(prompts)]
    results = run_all(engine, reqs)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().cuda()
    hf.generation_config.eos_token_id = None
    for p, res in zip(prompts, results):
        ids = torch.tensor([p], device="cuda")
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)[0, len(p):]
        assert res["tokens"][0] == ref.tolist()
    assert_no_leak(engine)
    engine.shutdown()
