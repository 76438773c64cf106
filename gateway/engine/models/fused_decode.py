"""A decode step of one sequence as a chain of fused weight reads (kernels.gemv).

At batch 1 every decoder layer is four weight reads with small operations between them; the general
path runs each of those as a kernel of its own (two norms, RoPE, the K/V store, SiLU-and-mul, plus
cuBLAS's split-K reductions), ~7 launches a layer that move almost nothing. Here each read carries them:

    q = rope(W_qkv RMSNorm(residual)); k, v stored     norm_gemv_rope_store
    residual += W_o attention(q)                       attention (the backend), gemv_add_residual
    act = silu(W_gate x) * W_up x, x = RMSNorm(residual)   norm_gemv_silu_mul
    residual += W_down act                             gemv_add_residual

so a layer is four products and the attention. The residual stream is kept whole in one buffer (the
general path carries the last sum pending into the next norm); the sums and roundings are the same.
The ends of the step fold in too: the first product looks up the token's embedding, and `decode_logits`
applies the final norm in the logits product, which writes the caller's float32 buffer.
Used for a one-token forward on a CUDA device when the family's variant and the backend allow it
(no o/MLP bias or per-head q/k norm; a backend that lets a kernel store K/V itself; one rank).
"""
from __future__ import annotations

import torch

from gateway.engine.models.layers import triton_kernel
from gateway.engine.models.parallel import tp_size


def fusable(variant) -> bool:
    """Whether a DecoderModel of `variant` can take this path at all; per forward, `decode_one`
    also needs one token on a CUDA device and the backend's consent."""
    return not (variant.o_bias or variant.mlp_bias or variant.qk_norm) and tp_size() == 1


def decode_one(model, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """Final hidden state [1, hidden] of one token, or None where this path does not apply."""
    residual = _layers(model, input_ids, positions)
    return None if residual is None else model.norm(residual)


def decode_logits(lm, input_ids: torch.Tensor, positions: torch.Tensor, out: torch.Tensor) -> bool:
    """Logits of one token written to `out` ([1, vocab] float32, contiguous), the final norm folded into the
    logits product; False (nothing written) where this path does not apply."""
    model, head = lm.model, lm.lm_head.weight
    if not model.fused_decode or head.shape[0] != out.shape[-1] or head.shape[0] % 2:
        return False
    residual = _layers(model, input_ids, positions)
    if residual is None:
        return False
    from kernels.gemv import gemv
    gemv(residual, head, norm=(model.norm.weight, model.norm.eps), out=out)
    return True


def _layers(model, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """The residual stream [1, hidden] after the last layer, before the final norm; None where this path
    does not apply."""
    if input_ids.shape[0] != 1 or triton_kernel("gemv", "gemv_add_residual") is None:
        return None
    from kernels.common import interpreting
    if not (input_ids.is_cuda or interpreting()):       # the interpreter: how CPU tests check this path
        return None
    first = model.layers[0].self_attn
    if first.backend.stored_decode_target(first.layer) is None:
        return None
    from kernels.gemv import gemv_add_residual, norm_gemv_rope_store, norm_gemv_silu_mul
    table = model.embed_tokens.weight
    residual = torch.empty((1, table.shape[1]), dtype=table.dtype, device=table.device)
    embed = (table, input_ids)          # the first layer's product looks the token up
    inv_freq = model.rotary.inv_freq
    for layer in model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        k_cache, v_cache, slots = attn.backend.stored_decode_target(attn.layer)
        norm = layer.input_layernorm
        q = norm_gemv_rope_store(residual, norm.weight, norm.eps, attn.qkv_proj.weight, attn.qkv_proj.bias,
                                 positions, inv_freq, k_cache, v_cache, slots, attn.heads, attn.kv_heads, embed)
        embed = None
        out = attn.backend.attend_stored(q.view(1, attn.heads, attn.head_dim), attn.layer, attn.scale, attn.window)
        gemv_add_residual(out.view(1, -1), attn.o_proj.weight, residual, launch_next_early=True)
        norm = layer.post_attention_layernorm
        act = norm_gemv_silu_mul(residual, norm.weight, norm.eps, mlp.gate_up_proj.weight)
        gemv_add_residual(act, mlp.down_proj.weight, residual)
    return residual
