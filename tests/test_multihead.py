"""Multi-head attention against a naive reference, torch.nn.MultiheadAttention, and itself."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from seq2seq.models.attention.functional import scaled_dot_product
from seq2seq.models.attention.multihead import MultiHeadAttention
from seq2seq.models.base import select_batch

B, TQ, TK, D, H = 3, 5, 7, 16, 4


def load_from_torch_mha(ours: MultiHeadAttention, mha: nn.MultiheadAttention) -> None:
    """Copy torch's fused in-projection and output projection into our separate layers."""
    with torch.no_grad():
        for proj, weight, bias in zip(
            (ours.q_proj, ours.k_proj, ours.v_proj),
            mha.in_proj_weight.chunk(3),
            mha.in_proj_bias.chunk(3),
            strict=True,
        ):
            proj.weight.copy_(weight)
            proj.bias.copy_(bias)
        ours.out_proj.weight.copy_(mha.out_proj.weight)
        ours.out_proj.bias.copy_(mha.out_proj.bias)


def naive_mha(
    mod: MultiHeadAttention, x_q: Tensor, x_kv: Tensor, allowed: Tensor
) -> tuple[Tensor, Tensor]:
    """One head at a time, softmax by hand; ``allowed`` (B, Tq, Tk) True where a query looks."""
    q, k, v = mod.q_proj(x_q), mod.k_proj(x_kv), mod.v_proj(x_kv)
    dh = q.size(-1) // mod.heads
    heads, weights = [], []
    for h in range(mod.heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(dh)  # (B, Tq, Tk)
        exp = torch.where(allowed, torch.exp(scores - scores.max()), torch.zeros_like(scores))
        w = exp / exp.sum(dim=-1, keepdim=True)
        heads.append(w @ v[..., cols])
        weights.append(w)
    return mod.out_proj(torch.cat(heads, dim=-1)), torch.stack(weights, dim=1)


def _key_mask(length: int) -> Tensor:
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, length - 3 :] = False
    mask[2, 2:] = False
    return mask


def test_scaled_dot_product_golden_values() -> None:
    q = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]]])  # (1, 1, 3, 2)
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]]])
    mask = torch.tensor([True, True, False])
    out, weights = scaled_dot_product(q, k, v, mask)
    # scores 1/√2 and 0; the masked third key would otherwise dominate
    w0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    torch.testing.assert_close(weights, torch.tensor([[[[w0, 1 - w0, 0.0]]]]))
    expected = [w0 * 1 + (1 - w0) * 3, w0 * 2 + (1 - w0) * 4]
    torch.testing.assert_close(out, torch.tensor([[[expected]]]))


@pytest.mark.parametrize("case", ["self_padding", "self_causal", "cross_padding"])
def test_both_paths_match_naive_reference(case: str) -> None:
    torch.manual_seed(0)
    # attention dropout must be off in eval mode
    mod = MultiHeadAttention(D, H, dropout=0.5, causal=case == "self_causal").eval()
    x = torch.randn(B, TQ, D)
    if case == "cross_padding":
        memory, key_mask = torch.randn(B, TK, D), _key_mask(TK)
        allowed = key_mask[:, None, :].expand(B, TQ, TK)
        kv = mod.project_kv(memory)
        fast, _ = mod(x, key_mask, kv=kv)
        slow, weights = mod(x, key_mask, need_weights=True, kv=kv)
    else:
        memory = x
        key_mask = _key_mask(TQ) if case == "self_padding" else None
        if key_mask is None:
            allowed = torch.ones(TQ, TQ, dtype=torch.bool).tril().expand(B, TQ, TQ)
        else:
            allowed = key_mask[:, None, :].expand(B, TQ, TQ)
        fast, _ = mod(x, key_mask)
        slow, weights = mod(x, key_mask, need_weights=True)
    ref_out, ref_weights = naive_mha(mod, x, memory, allowed)
    torch.testing.assert_close(slow, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)
    assert torch.all(weights.masked_select(~allowed[:, None]) == 0)


@pytest.mark.parametrize("mask_kind", ["key_padding", "causal"])
def test_matches_torch_multihead_attention(mask_kind: str) -> None:
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention(D, H, dropout=0.0, causal=mask_kind == "causal").eval()
    load_from_torch_mha(ours, mha)
    x = torch.randn(B, TQ, D)
    if mask_kind == "key_padding":
        key_mask = _key_mask(TQ)
        ref, ref_weights = mha(
            x, x, x, key_padding_mask=~key_mask, need_weights=True, average_attn_weights=False
        )
    else:
        key_mask = None
        future = torch.ones(TQ, TQ, dtype=torch.bool).triu(1)  # torch: True = may NOT attend
        ref, ref_weights = mha(
            x, x, x, attn_mask=future, need_weights=True, average_attn_weights=False
        )
    slow, weights = ours(x, key_mask, need_weights=True)
    fast, _ = ours(x, key_mask)
    torch.testing.assert_close(slow, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["softmax", "efficient"])
def test_padded_keys_get_zero_weight_and_change_nothing(kind: str) -> None:
    torch.manual_seed(2)
    mod = MultiHeadAttention(D, H, dropout=0.0, kind=kind).eval()
    x, key_mask = torch.randn(B, TK, D), _key_mask(TK)
    out_fast, _ = mod(x, key_mask)
    out_slow, weights = mod(x, key_mask, need_weights=True)
    assert torch.all(weights.masked_select(~key_mask[:, None, None, :]) == 0)
    assert torch.all(weights.masked_select(key_mask[:, None, None, :]) > 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, TK))
    torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=0)

    # rewrite the padding positions of the input: their keys and values change
    x2 = torch.where(key_mask[..., None], x, 50 * torch.randn(B, TK, D))
    real = key_mask[..., None].expand_as(out_fast)
    for need_weights in (False, True):
        out2, _ = mod(x2, key_mask, need_weights=need_weights)
        torch.testing.assert_close(out2[real], out_fast[real], atol=1e-5, rtol=0)


def test_cross_attention_ignores_padded_memory() -> None:
    torch.manual_seed(3)
    mod = MultiHeadAttention(D, H, dropout=0.0).eval()
    x, memory, key_mask = torch.randn(B, TQ, D), torch.randn(B, TK, D), _key_mask(TK)
    memory2 = torch.where(key_mask[..., None], memory, -30 * torch.randn(B, TK, D))
    for need_weights in (False, True):
        out, _ = mod(x, key_mask, need_weights, kv=mod.project_kv(memory))
        out2, _ = mod(x, key_mask, need_weights, kv=mod.project_kv(memory2))
        torch.testing.assert_close(out2, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_efficient_kind_matches_naive_implied_matrix(causal: bool) -> None:
    torch.manual_seed(4)
    mod = MultiHeadAttention(D, H, dropout=0.0, kind="efficient", causal=causal).eval()
    x = torch.randn(B, TK, D)
    key_mask = None if causal else _key_mask(TK)
    q, k, v = (mod._split_heads(p(x)) for p in (mod.q_proj, mod.k_proj, mod.v_proj))
    rows = []
    for t in range(TK):  # the key softmax runs over the keys query t may see, by hand
        visible = torch.zeros(B, TK, dtype=torch.bool)
        visible[:, : t + 1 if causal else TK] = True
        if key_mask is not None:
            visible &= key_mask
        exp = torch.where(visible[:, None, :, None], torch.exp(k), torch.zeros_like(k))
        rho_k = exp / exp.sum(dim=2, keepdim=True)  # (B, H, Tk, dh)
        rows.append(q[:, :, t : t + 1].softmax(dim=-1) @ rho_k.transpose(-2, -1))
    ref_weights = torch.cat(rows, dim=2)  # (B, H, T, T)
    ref_out = mod.out_proj(mod._merge_heads(ref_weights @ v))
    fast, _ = mod(x, key_mask)
    slow, weights = mod(x, key_mask, need_weights=True)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(slow, ref_out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["softmax", "efficient"])
def test_step_with_cache_matches_causal_forward(kind: str) -> None:
    torch.manual_seed(5)
    mod = MultiHeadAttention(D, H, dropout=0.0, kind=kind, causal=True).eval()
    steps = 20  # past the cache's first two doublings (8, 16 positions)
    x = torch.randn(B, steps, D)
    full, _ = mod(x)
    cache = mod.empty_cache(B, x)
    for t in range(steps):
        out, cache = mod.step(x[:, t : t + 1], cache)
        torch.testing.assert_close(out[:, 0], full[:, t], atol=1e-5, rtol=0)
    if kind == "softmax":
        assert cache.length == steps and cache.keys.shape[::2] == (B, H)  # batch first
        assert cache.keys.size(1) >= steps and cache.keys.size(3) == D // H
        keys, values = cache.used()
        assert keys.shape == values.shape == (B, H, steps, D // H)
        # reordering copies the used positions and keeps the room: the next step still fits
        index = torch.tensor([1, 1, 0])[:B]
        with torch.no_grad():  # as in search
            picked = select_batch(cache, index)
        assert picked.keys.size(1) == cache.keys.size(1) and picked.length == steps
        torch.testing.assert_close(picked.used()[0], keys[index], rtol=0, atol=0)
        torch.testing.assert_close(picked.used()[1], values[index], rtol=0, atol=0)


def test_causal_attention_rejects_a_key_mask() -> None:
    mod = MultiHeadAttention(D, H, dropout=0.0, causal=True)
    with pytest.raises(ValueError, match="causal"):
        mod(torch.randn(B, TQ, D), _key_mask(TQ))
