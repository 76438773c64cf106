"""Matrix-vector products of a batch-1 decode step, each with the small operation around it fused in.

At batch 1 a decode step is a chain of weight reads; the norms, rotations, stores and activations
between them are each a kernel of their own that moves a few kilobytes but still costs a launch and a
ramp (~2 µs), about a fifth of a 1B-parameter step. Here each product y = W x (W: [N, K] as nn.Linear
keeps it, x: [K]) carries them as a prologue and an epilogue:

    norm_gemv_rope_store   x = RMSNorm(residual); y = W_qkv x (+ bias); q and k rotated (RoPE, cos and sin
                           of the position computed here); q written out, k and v stored at the token's slot.
                           In the first layer the residual is the token's embedding row, looked up here
                           and written to the residual stream (no embedding kernel ahead of it)
    norm_gemv_silu_mul     x = RMSNorm(residual); out = silu(W_gate x) * (W_up x)
    gemv_add_residual      residual += W x      (the o and down projections)
    gemv                   y = W x, or W RMSNorm(x)   (the logits of one token, the final norm folded in;
                           stored rounded to the activation dtype, into a float32 buffer if given one)

The rounding points are those of the unfused modules (models.layers, kernels.rmsnorm / rope /
kv_store / activation): the product is accumulated in float32 and rounded to the activation dtype,
then each step of the epilogue rounds where the module it replaces rounds. Only the products' summation
order differs from cuBLAS's. References: the `*_ref` functions, built from those modules' references.
On sm_90 each product launches as a programmatic dependent (kernels.common.pdl): its first weight
tiles, norm weight, bias, position and slot are read while the kernel before it still runs, and only
then does it wait for that kernel. So the position and the slot must have been written before the last
ordinary (non-PDL) launch or copy ahead of the products (a dependent may start before a product ahead
of it ends, never before an ordinary kernel or copy has); engine.cuda_graphs stages them (the token id
too) by an ordinary kernel before the step's first product, the eager path copies them from the host.
A product lets the next kernel launch once those reads are issued, or with `launch_next_early` (the o
product) at its first instruction: the o product's programs all fit at once, so gate/up programs join
them and read their whole weight slice while the attention ahead still runs.

One program owns BLOCK rows of each of two row sets that its epilogue pairs: the two halves of a head
for RoPE (rows r and r + head_dim / 2), a gate row and its up row, or plain consecutive rows. Row r of
program p: group p // P, part p % P, r = group * STRIDE + part * BLOCK + i (set A) and that + OFFSET (set B).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from kernels.common import gdc_launch_dependents, gdc_wait, interpreting, pdl
from kernels.kv_store import kv_store_ref
from kernels.rmsnorm import add_rmsnorm_ref
from kernels.rope import rope_qk_ref

EPI_RESIDUAL, EPI_SILU_MUL, EPI_ROPE_STORE, EPI_STORE = 0, 1, 2, 3


@triton.jit
def _rms_scale(X, K: tl.constexpr, BK: tl.constexpr, eps):
    """1 / rms of x[:K], in float32 (as kernels.rmsnorm)."""
    total = tl.zeros([BK], tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + tl.arange(0, BK)
        x = tl.load(X + kk, mask=kk < K, other=0.0).to(tl.float32)
        total += x * x
    return tl.rsqrt(tl.sum(total, 0) / K + eps)


@triton.jit
def _weight_tiles(W, rows_a, rows_b, row_ok, kk, K: tl.constexpr, EVEN: tl.constexpr):
    """W's [BLOCK, BK] tiles of both row sets at columns kk."""
    if EVEN:        # no masks: whole tiles, so the loads vectorise
        wa = tl.load(W + rows_a.to(tl.int64)[:, None] * K + kk[None, :])
        wb = tl.load(W + rows_b.to(tl.int64)[:, None] * K + kk[None, :])
    else:
        ok = row_ok[:, None] & (kk < K)[None, :]
        wa = tl.load(W + rows_a.to(tl.int64)[:, None] * K + kk[None, :], mask=ok, other=0.0)
        wb = tl.load(W + rows_b.to(tl.int64)[:, None] * K + kk[None, :], mask=ok, other=0.0)
    return wa, wb


@triton.jit
def _input_chunk(X, nw, kk, K: tl.constexpr, scale, NORM: tl.constexpr):
    """x[kk] as float32 [1, BK]; with NORM, RMSNorm'd as kernels.rmsnorm (nw: the norm weight at kk):
    normalised in float32, rounded, times the weight, rounded."""
    x = tl.load(X + kk, mask=kk < K, other=0.0)
    if NORM:
        x = (nw.to(tl.float32) * (x.to(tl.float32) * scale).to(x.dtype).to(tl.float32)).to(x.dtype)
    return x.to(tl.float32)[None, :]


@triton.jit
def _gemv_kernel(
    X, W, Bias, NormW, Out, Res, Positions, InvFreq, KCache, VCache, Slots, Ids,
    eps, stride_ks, stride_kh, stride_vs, stride_vh,
    K: tl.constexpr, SUB: tl.constexpr, P: tl.constexpr, STRIDE: tl.constexpr, OFFSET: tl.constexpr,
    BLOCK: tl.constexpr, BK: tl.constexpr, EVEN: tl.constexpr, NORM: tl.constexpr, HAS_BIAS: tl.constexpr,
    EPILOGUE: tl.constexpr, QH: tl.constexpr, KVH: tl.constexpr, PRECISE_TRIG: tl.constexpr,
    EMBED: tl.constexpr, PDL: tl.constexpr, EARLY_LAUNCH: tl.constexpr,
):
    if PDL and EARLY_LAUNCH:
        gdc_launch_dependents()
    if EMBED:           # x is row ids[0] of the embedding table X, which the kernels before never write
        X = X + tl.load(Ids).to(tl.int64) * K
    group = tl.program_id(0) // P
    part = (tl.program_id(0) % P) * BLOCK + tl.arange(0, BLOCK)
    row_ok = part < SUB
    rows_a = group * STRIDE + part
    rows_b = rows_a + OFFSET
    # Everything that does not depend on the kernel before is read before waiting for it: the first
    # weight tiles, the norm weight, the bias, and the token's position and slot (staged before the step's
    # first kernel). Launched as a programmatic dependent (PDL), these reads overlap that kernel's tail.
    kk = tl.arange(0, BK)
    wa, wb = _weight_tiles(W, rows_a, rows_b, row_ok, kk, K, EVEN)
    nw = tl.load(NormW + kk, mask=kk < K, other=0.0) if NORM else 0.0
    if HAS_BIAS:
        bias_a = tl.load(Bias + rows_a, mask=row_ok, other=0.0).to(tl.float32)
        bias_b = tl.load(Bias + rows_b, mask=row_ok, other=0.0).to(tl.float32)
    if EPILOGUE == 2:       # EPI_ROPE_STORE: cos and sin of the position, as models.layers computes them
        freq = tl.load(Positions).to(tl.float32) * tl.load(InvFreq + part, mask=row_ok, other=0.0)
        if PRECISE_TRIG:
            cos, sin = libdevice.cos(freq), libdevice.sin(freq)
        else:               # the interpreter has no libdevice; numpy's cos/sin serve
            cos, sin = tl.cos(freq), tl.sin(freq)
        slot = tl.load(Slots).to(tl.int64)
    if PDL:
        if not EARLY_LAUNCH:
            gdc_launch_dependents()
        gdc_wait()          # x, the residual and the caches are the kernels before's: read after this
    if EPILOGUE == 0:       # EPI_RESIDUAL: the residual's read overlaps x's
        ra = tl.load(Res + rows_a, mask=row_ok, other=0.0).to(tl.float32)
        rb = tl.load(Res + rows_b, mask=row_ok, other=0.0).to(tl.float32)
    scale = 1.0
    if NORM:
        scale = _rms_scale(X, K, BK, eps)
    xf = _input_chunk(X, nw, kk, K, scale, NORM)
    acc_a = wa.to(tl.float32) * xf
    acc_b = wb.to(tl.float32) * xf
    for k0 in range(BK, K, BK):
        kk = k0 + tl.arange(0, BK)
        wa, wb = _weight_tiles(W, rows_a, rows_b, row_ok, kk, K, EVEN)
        nw = tl.load(NormW + kk, mask=kk < K, other=0.0) if NORM else 0.0
        xf = _input_chunk(X, nw, kk, K, scale, NORM)
        acc_a += wa.to(tl.float32) * xf
        acc_b += wb.to(tl.float32) * xf
    if EMBED:           # the residual stream starts as the embedding row
        if tl.program_id(0) == 0:
            for k0 in range(0, K, BK):
                kk = k0 + tl.arange(0, BK)
                tl.store(Res + kk, tl.load(X + kk, mask=kk < K), mask=kk < K)
    ya = tl.sum(acc_a, 1)
    yb = tl.sum(acc_b, 1)
    if HAS_BIAS:        # cuBLAS adds the bias to the float32 product before rounding
        ya += bias_a
        yb += bias_b
    dtype = X.dtype.element_ty
    ya = ya.to(dtype).to(tl.float32)
    yb = yb.to(dtype).to(tl.float32)

    if EPILOGUE == 0:       # EPI_RESIDUAL: residual = (y + residual) rounded, as kernels.rmsnorm's add
        tl.store(Res + rows_a, (ya + ra).to(dtype), mask=row_ok)
        tl.store(Res + rows_b, (yb + rb).to(dtype), mask=row_ok)
    elif EPILOGUE == 1:     # EPI_SILU_MUL: as kernels.activation
        silu = (ya / (1.0 + tl.exp(-ya))).to(dtype).to(tl.float32)
        tl.store(Out + part, (silu * yb).to(dtype), mask=row_ok)
    elif EPILOGUE == 3:     # EPI_STORE
        tl.store(Out + rows_a, ya.to(dtype), mask=row_ok)
        tl.store(Out + rows_b, yb.to(dtype), mask=row_ok)
    else:                   # EPI_ROPE_STORE: rows of head `group`, a its first half, b its second
        head = group
        if head < QH + KVH:     # q or k: rotated as kernels.rope
            c = cos.to(dtype).to(tl.float32)
            s = sin.to(dtype).to(tl.float32)
            new_a = (ya * c).to(dtype).to(tl.float32) - (yb * s).to(dtype).to(tl.float32)
            new_b = (yb * c).to(dtype).to(tl.float32) + (ya * s).to(dtype).to(tl.float32)
            ya, yb = new_a, new_b
        if head < QH:
            tl.store(Out + rows_a, ya.to(dtype), mask=row_ok)
            tl.store(Out + rows_b, yb.to(dtype), mask=row_ok)
        elif head < QH + KVH:
            base = KCache + slot * stride_ks + (head - QH) * stride_kh
            tl.store(base + part, ya.to(KCache.dtype.element_ty), mask=row_ok)
            tl.store(base + OFFSET + part, yb.to(KCache.dtype.element_ty), mask=row_ok)
        else:
            base = VCache + slot * stride_vs + (head - QH - KVH) * stride_vh
            tl.store(base + part, ya.to(VCache.dtype.element_ty), mask=row_ok)
            tl.store(base + OFFSET + part, yb.to(VCache.dtype.element_ty), mask=row_ok)


def _config(rows: int, k: int, epilogue: int) -> tuple[int, int, int]:
    """(BLOCK, BK, num_warps): few rows and long reads per program, so that every SM holds several
    programs each with 16 KB of loads in flight. H100, 2026-11-22 (loadtest.gemv_bench --sweep, and whole
    steps for gate/up): qkv at 2 x 1024 (8B: 18.6 against 22.4 us at 4 x 1024); o and down at ~512
    programs (8B o: 12.3 against 13.9 us at 2 x 2048); gate/up at 2 x 2048, the whole slice of a 1B
    program read before its wait (with the o product's early launch, 1B step 0.975-0.992 -> 0.948-0.964
    ms, 8B 5.160 -> 5.125); the logits within noise of 4 x 1024."""
    if epilogue == EPI_ROPE_STORE:
        block, bk = 2, 1024
    elif epilogue == EPI_RESIDUAL:
        block = max(1, min(4, rows // 1024))
        bk = 4096 // block
    elif epilogue == EPI_SILU_MUL:
        block, bk = 2, 2048
    else:
        block = 2 if rows <= 4096 else 4
        bk = 4096 // block
    return block, min(bk, triton.next_power_of_2(k)), 4      # at most 2 x 4096 accumulators: no spills


def _launch(x, w, epilogue, *, sub, groups, stride, offset, norm=None, bias=None, out=None, res=None,
            rope=None, kv=None, qh=0, kvh=0, ids=None, launch_next_early=False, block=None, bk=None,
            num_warps=None):
    k = x.shape[-1]
    assert x.is_contiguous() and w.is_contiguous() and w.shape[1] == k and (ids is not None or x.numel() == k)
    dblock, dbk, dwarps = _config(w.shape[0], k, epilogue)
    block, bk, num_warps = block or dblock, bk or dbk, num_warps or dwarps
    p = triton.cdiv(sub, block)
    dummy = x
    positions, inv_freq = rope if rope is not None else (dummy, dummy)
    k_cache, v_cache, slots = kv if kv is not None else (dummy[None, None], dummy[None, None], dummy)
    nw, eps = norm if norm is not None else (dummy, 0.0)
    dependent = pdl(x.device)
    _gemv_kernel[(groups * p,)](
        x, w, bias if bias is not None else dummy, nw, out if out is not None else dummy,
        res if res is not None else dummy, positions, inv_freq, k_cache, v_cache, slots,
        ids if ids is not None else dummy,
        eps, k_cache.stride(0), k_cache.stride(1), v_cache.stride(0), v_cache.stride(1),
        K=k, SUB=sub, P=p, STRIDE=stride, OFFSET=offset, BLOCK=block, BK=bk,
        EVEN=k % bk == 0 and sub % block == 0, NORM=norm is not None, HAS_BIAS=bias is not None,
        EPILOGUE=epilogue, QH=qh, KVH=kvh, PRECISE_TRIG=not interpreting(), EMBED=ids is not None,
        PDL=dependent, EARLY_LAUNCH=launch_next_early, num_warps=num_warps, **({"launch_pdl": True} if dependent else {}),
    )


def gemv_add_residual(x: torch.Tensor, w: torch.Tensor, residual: torch.Tensor, launch_next_early: bool = False,
                      **tune) -> None:
    """residual += W x, rounded as the module's add: x [1, K], w [N, K], residual [1, N]; in place.
    `launch_next_early`: under PDL the next kernel may launch at this one's first instruction."""
    n = w.shape[0]
    assert residual.shape[-1] == n and residual.is_contiguous() and residual.dtype == x.dtype
    assert n % 2 == 0, "plain rows are split into two equal sets"
    _launch(x, w, EPI_RESIDUAL, sub=n // 2, groups=1, stride=0, offset=n // 2, res=residual,
            launch_next_early=launch_next_early, **tune)


def norm_gemv_silu_mul(residual: torch.Tensor, norm_weight: torch.Tensor, eps: float, w: torch.Tensor,
                       **tune) -> torch.Tensor:
    """silu(W_gate x) * (W_up x) with x = RMSNorm(residual): w [2I, K] (gate rows, then up rows). [1, I]."""
    inter = w.shape[0] // 2
    out = torch.empty((1, inter), dtype=residual.dtype, device=residual.device)
    _launch(residual, w, EPI_SILU_MUL, sub=inter, groups=1, stride=0, offset=inter, norm=(norm_weight, eps),
            out=out, **tune)
    return out


def gemv(x: torch.Tensor, w: torch.Tensor, norm: tuple[torch.Tensor, float] | None = None,
         out: torch.Tensor | None = None, **tune) -> torch.Tensor:
    """W x, or W RMSNorm(x) with norm = (weight, eps): x [1, K], w [N, K] (N even). [1, N] in x's dtype,
    or written to `out` ([1, N], contiguous; a wider dtype holds the same x-dtype values)."""
    n = w.shape[0]
    assert n % 2 == 0, "plain rows are split into two equal sets"
    if out is None:
        out = torch.empty((1, n), dtype=x.dtype, device=x.device)
    assert out.shape == (1, n) and out.is_contiguous()
    _launch(x, w, EPI_STORE, sub=n // 2, groups=1, stride=0, offset=n // 2, norm=norm, out=out, **tune)
    return out


def norm_gemv_rope_store(residual: torch.Tensor, norm_weight: torch.Tensor, eps: float, w: torch.Tensor,
                         bias: torch.Tensor | None, positions: torch.Tensor, inv_freq: torch.Tensor,
                         k_cache: torch.Tensor, v_cache: torch.Tensor, out_slots: torch.Tensor,
                         num_heads: int, num_kv_heads: int, embed: tuple[torch.Tensor, torch.Tensor] | None = None,
                         **tune) -> torch.Tensor:
    """q of one token, [1, heads * D], rotated; its k (rotated) and v stored at slot `out_slots[0]` of
    k_cache / v_cache ([slots, kv_heads, D]). x = RMSNorm(residual); w: [(heads + 2 kv_heads) * D, K].
    With embed = (table [V, K], ids [1]), the residual is table[ids[0]], written to `residual` here."""
    d = k_cache.shape[-1]
    assert d % 2 == 0 and w.shape[0] == (num_heads + 2 * num_kv_heads) * d
    assert k_cache.stride(2) == v_cache.stride(2) == 1 and inv_freq.dtype == torch.float32
    q = torch.empty((1, num_heads * d), dtype=residual.dtype, device=residual.device)
    x, ids = residual, None
    if embed is not None:
        x, ids = embed
        assert x.dtype == residual.dtype and x.shape[1] == residual.shape[-1] == residual.numel() and ids.numel() == 1
    _launch(x, w, EPI_ROPE_STORE, sub=d // 2, groups=num_heads + 2 * num_kv_heads, stride=d,
            offset=d // 2, norm=(norm_weight, eps), bias=bias, out=q, res=residual, rope=(positions, inv_freq),
            kv=(k_cache, v_cache, out_slots), qh=num_heads, kvh=num_kv_heads, ids=ids, **tune)
    return q


# References: the unfused modules' own references, composed.

def gemv_add_residual_ref(x, w, residual) -> None:
    residual.copy_((torch.nn.functional.linear(x, w).float() + residual.float()).to(residual.dtype))


def gemv_ref(x, w, norm=None) -> torch.Tensor:
    return torch.nn.functional.linear(x if norm is None else add_rmsnorm_ref(x, *norm), w)


def norm_gemv_silu_mul_ref(residual, norm_weight, eps, w) -> torch.Tensor:
    from kernels.activation import silu_and_mul_ref
    return silu_and_mul_ref(torch.nn.functional.linear(add_rmsnorm_ref(residual, norm_weight, eps), w))


def norm_gemv_rope_store_ref(residual, norm_weight, eps, w, bias, positions, inv_freq, k_cache, v_cache,
                             out_slots, num_heads, num_kv_heads, embed=None) -> torch.Tensor:
    if embed is not None:
        residual.copy_(torch.nn.functional.embedding(embed[1], embed[0]).view_as(residual))
    d = k_cache.shape[-1]
    qkv = torch.nn.functional.linear(add_rmsnorm_ref(residual, norm_weight, eps), w, bias)
    q, k, v = qkv.split([num_heads * d, num_kv_heads * d, num_kv_heads * d], dim=-1)
    q, k, v = q.reshape(1, num_heads, d).clone(), k.reshape(1, num_kv_heads, d).clone(), v.reshape(1, num_kv_heads, d)
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    rope_qk_ref(q, k, emb.cos().to(q.dtype), emb.sin().to(q.dtype))
    kv_store_ref(k, v, k_cache, v_cache, out_slots)
    return q.reshape(1, -1)
