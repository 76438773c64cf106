"""Attention backends: the one place where a model meets the KV pool.

A runner calls `backend.prepare(meta)` once per forward; every attention layer then calls
`backend.forward(q, k, v, layer, window)`. Backends (torch reference, Triton, FlashInfer) are
interchangeable and compared against each other in tests. `TritonAttention` is imported on first use,
so this package imports without triton installed.
"""
from gateway.engine.attention.base import AttentionBackend, AttentionMetadata
from gateway.engine.attention.torch_ref import TorchAttention

__all__ = ["AttentionBackend", "AttentionMetadata", "TorchAttention", "TritonAttention"]


def __getattr__(name: str):
    if name == "TritonAttention":
        from gateway.engine.attention.triton_backend import TritonAttention
        return TritonAttention
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
