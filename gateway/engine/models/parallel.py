"""Tensor-parallel-ready linear and embedding layers (world size 1 until multi-GPU lands).

Each parameter carries a `weight_loader(param, tensor, shard)` that copies its own slice of a
checkpoint tensor, so the loader never needs to know how a layer is split or fused. Parameters are
allocated with torch.empty on the current default device: no random init, no CPU copy on a GPU.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gateway.engine.models.layers import triton_kernel


def tp_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def tp_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


class CheckpointShapeError(ValueError):
    """A checkpoint tensor does not have the shape the model expects."""


def _copy_checked(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.shape != src.shape:
        raise CheckpointShapeError(f"has shape {list(src.shape)}, expected {list(dst.shape)}")
    dst.copy_(src)


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class ColumnParallelLinear(nn.Module):
    """y = x W^T + b with W's output rows split across ranks; each rank returns its slice."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        assert out_features % tp_size() == 0, (out_features, tp_size())
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param(out_features // tp_size(), in_features)
        self.weight.weight_loader = self.weight_loader
        self.bias = None
        if bias:
            self.bias = _param(out_features // tp_size())
            self.bias.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard=None) -> None:
        if loaded.shape[0] != self.out_features:
            raise CheckpointShapeError(f"has shape {list(loaded.shape)}, expected {[self.out_features, *param.shape[1:]]}")
        rows = param.shape[0]
        _copy_checked(param.data, loaded.narrow(0, tp_rank() * rows, rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel projections of the same input fused into one matmul (gate/up)."""

    def __init__(self, in_features: int, out_sizes: list[int], bias: bool = False):
        self.out_sizes = out_sizes
        super().__init__(in_features, sum(out_sizes), bias)

    def shard_range(self, shard) -> tuple[int, int]:
        """(offset, rows) of a sub-projection inside this rank's fused parameter."""
        sizes = [s // tp_size() for s in self.out_sizes]
        return sum(sizes[:shard]), sizes[shard]

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard=None) -> None:
        offset, rows = self.shard_range(shard)
        full = rows * tp_size()
        if loaded.shape[0] != full:
            raise CheckpointShapeError(f"has shape {list(loaded.shape)}, expected {[full, *param.shape[1:]]}")
        _copy_checked(param.data.narrow(0, offset, rows), loaded.narrow(0, tp_rank() * rows, rows))


class QKVParallelLinear(MergedColumnParallelLinear):
    """q, k and v projections fused; heads split across ranks (kv heads replicated if fewer than ranks)."""

    def __init__(self, hidden: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool = False):
        self.head_dim = head_dim
        self.num_heads = num_heads // tp_size()
        self.num_kv_heads = max(1, num_kv_heads // tp_size())
        self.kv_replicas = max(1, tp_size() // num_kv_heads)
        sizes = [num_heads * head_dim] + [self.num_kv_heads * tp_size() * head_dim] * 2
        super().__init__(hidden, sizes, bias)

    def shard_range(self, shard) -> tuple[int, int]:
        return super().shard_range("qkv".index(shard))

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard=None) -> None:
        offset, rows = self.shard_range(shard)
        expected = rows * tp_size() // (1 if shard == "q" else self.kv_replicas)
        if loaded.shape[0] != expected:
            raise CheckpointShapeError(f"has shape {list(loaded.shape)}, expected {[expected, *param.shape[1:]]}")
        rank = tp_rank() if shard == "q" else tp_rank() // self.kv_replicas
        _copy_checked(param.data.narrow(0, offset, rows), loaded.narrow(0, rank * rows, rows))


class RowParallelLinear(nn.Module):
    """y = x W^T + b with W's input columns split across ranks; partial sums are all-reduced."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        assert in_features % tp_size() == 0, (in_features, tp_size())
        self.in_features = in_features
        self.weight = _param(out_features, in_features // tp_size())
        self.weight.weight_loader = self.weight_loader
        self.bias = None
        if bias:
            self.bias = _param(out_features)
            self.bias.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard=None) -> None:
        if param.dim() == 1:                       # the bias is added once, on every rank, after the reduce
            return _copy_checked(param.data, loaded)
        if loaded.dim() != 2 or loaded.shape[1] != self.in_features:
            raise CheckpointShapeError(f"has shape {list(loaded.shape)}, expected {[param.shape[0], self.in_features]}")
        cols = param.shape[1]
        _copy_checked(param.data, loaded.narrow(1, tp_rank() * cols, cols))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if tp_size() > 1:
            dist.all_reduce(y)
        return y if self.bias is None else y + self.bias


class VocabParallelEmbedding(nn.Module):
    """Token embedding with the vocabulary split across ranks; out-of-shard ids contribute zeros."""

    def __init__(self, vocab_size: int, hidden: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.shard_rows = -(-vocab_size // tp_size())
        self.start = tp_rank() * self.shard_rows
        self.weight = _param(self.shard_rows, hidden)
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard=None) -> None:
        if loaded.dim() != 2 or loaded.shape[0] != self.vocab_size or loaded.shape[1] != param.shape[1]:
            raise CheckpointShapeError(f"has shape {list(loaded.shape)}, expected {[self.vocab_size, param.shape[1]]}")
        rows = min(self.shard_rows, self.vocab_size - self.start)
        param.data.zero_()
        param.data[:rows].copy_(loaded[self.start:self.start + rows])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if tp_size() == 1:
            return F.embedding(ids, self.weight)
        local = ids - self.start
        outside = (local < 0) | (local >= self.shard_rows)
        y = F.embedding(local.masked_fill(outside, 0), self.weight).masked_fill(outside[:, None], 0)
        dist.all_reduce(y)
        return y


class ParallelLMHead(VocabParallelEmbedding):
    """Output projection to the vocabulary, sharded like the embedding; logits are gathered."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        one = hidden.shape[0] == 1 and hidden.is_cuda and hidden.is_contiguous() and self.weight.shape[0] % 2 == 0
        if one and (gemv := triton_kernel("gemv", "gemv")) is not None:
            logits = gemv(hidden, self.weight)      # a batch-1 product streams the weights faster than cuBLAS's
        else:
            logits = F.linear(hidden, self.weight)
        if tp_size() > 1:
            parts = [torch.empty_like(logits) for _ in range(tp_size())]
            dist.all_gather(parts, logits)
            logits = torch.cat(parts, dim=-1)
        return logits[..., :self.vocab_size]
