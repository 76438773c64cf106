"""Attention backends: the one place where a model meets the KV pool.

A runner calls `backend.prepare(meta)` once per forward; every attention layer then calls
`backend.forward(q, k, v, layer, window)`. Backends (torch reference, Triton, FlashInfer) are
interchangeable and compared against each other in tests.
"""
from gateway.engine.attention.base import AttentionBackend, AttentionMetadata
from gateway.engine.attention.torch_ref import TorchAttention

__all__ = ["AttentionBackend", "AttentionMetadata", "TorchAttention"]
