"""Weight loading: safetensors (one file or sharded with an index) onto our fused parameters.

Every checkpoint tensor must map onto exactly one parameter slice and every slice must be filled:
a missing, unexpected or wrongly shaped tensor is a CheckpointError naming it. Tensors are read
straight onto the target device one at a time, so a GPU load never holds the model on the CPU.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from gateway.engine.models.parallel import CheckpointShapeError

# Buffers some exporters save that are recomputed, not loaded.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
PROGRESS_MIN_BYTES = 1 << 30


class CheckpointError(ValueError):
    """The checkpoint's tensors do not match the model its config.json describes."""


def checkpoint_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [path / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index.name} lists shard(s) that are not in {path}: {', '.join(missing)}")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    found = sorted(path.glob("*.safetensors"))
    if found:
        return found
    raise CheckpointError(f"no *.safetensors weights in {path} (.bin checkpoints are not supported)")


def expected_tensors(model: torch.nn.Module) -> dict[str, tuple[str, object]]:
    """Checkpoint tensor name -> (our parameter name, shard id or None)."""
    unpack = {}
    for ckpt_part, (ours, shard) in model.packed_modules.items():
        unpack.setdefault(ours, []).append((ckpt_part, shard))
    table = {}
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        parent, _, last = module.rpartition(".")
        for ckpt_part, shard in unpack.get(last, [(last, None)]):
            table[f"{parent}.{ckpt_part}.{leaf}" if parent else f"{ckpt_part}.{leaf}"] = (name, shard)
    return table


def load_weights(model: torch.nn.Module, path: str | Path, device: torch.device) -> None:
    path = Path(path)
    files = checkpoint_files(path)
    table = expected_tensors(model)
    params = dict(model.named_parameters())
    tied = getattr(model.config, "tie_word_embeddings", False)
    pending = set(table)
    total = sum(f.stat().st_size for f in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="loading weights",
              disable=total < PROGRESS_MIN_BYTES) as bar:
        for file in files:
            with safe_open(file, framework="pt", device=str(device)) as f:
                for ckpt_name in f.keys():
                    if ckpt_name.endswith(IGNORED_SUFFIXES) or (tied and ckpt_name == "lm_head.weight"):
                        continue
                    if ckpt_name not in table:
                        raise CheckpointError(f"unexpected tensor {ckpt_name!r} in {file.name}: "
                                              f"{type(model).__name__} has no parameter for it")
                    if ckpt_name not in pending:
                        raise CheckpointError(f"tensor {ckpt_name!r} appears twice in the checkpoint")
                    name, shard = table[ckpt_name]
                    param = params[name]
                    tensor = f.get_tensor(ckpt_name)
                    try:
                        param.weight_loader(param, tensor.to(param.dtype), shard) \
                            if hasattr(param, "weight_loader") else _load_whole(param, tensor)
                    except CheckpointShapeError as e:
                        raise CheckpointError(f"tensor {ckpt_name!r} in {file.name} {e}") from None
                    pending.discard(ckpt_name)
                    bar.update(tensor.numel() * tensor.element_size())
    if pending:
        listed = ", ".join(sorted(pending)[:8]) + (f" and {len(pending) - 8} more" if len(pending) > 8 else "")
        raise CheckpointError(f"missing tensor(s) in {path}: {listed}")


def _load_whole(param: torch.nn.Parameter, tensor: torch.Tensor) -> None:
    if param.shape != tensor.shape:
        raise CheckpointShapeError(f"has shape {list(tensor.shape)}, expected {list(param.shape)}")
    param.data.copy_(tensor)


@torch.inference_mode()
def fill_random(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights drawn on the parameters' own device, scaled as gateway.modelgen writes them (norm
    weights about 1, biases about 0.1, matrices 1/sqrt(fan-in)): a model of a real shape in seconds,
    without writing or reading a checkpoint."""
    params = dict(model.named_parameters())           # a tied head appears once
    gen = torch.Generator(device=next(iter(params.values())).device).manual_seed(seed)
    for name, param in params.items():
        if name.endswith("norm.weight"):
            param.normal_(1.0, 0.1, generator=gen)
        elif param.dim() == 1:
            param.normal_(0.0, 0.1, generator=gen)
        else:
            param.normal_(0.0, param.shape[1] ** -0.5, generator=gen)
