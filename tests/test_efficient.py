"""Efficient (linear) attention against naive references written out here."""

from __future__ import annotations

import pytest
import torch

from seq2seq.models.attention.efficient import (
    EfficientState,
    causal_efficient_attention,
    causal_efficient_step,
    causal_efficient_weights,
    efficient_attention,
    efficient_attention_weights,
)

B, H, T, DK, DV = 2, 3, 7, 5, 4


def _qkv(t: int = T, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(seed)
    return tuple(scale * torch.randn(B, H, t, d, dtype=torch.float64) for d in (DK, DK, DV))


def _naive_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per position t: ρ_q(q_t) (softmax over j <= t of k_j)ᵀ V_{<=t}, a plain loop."""
    outs = []
    for t in range(q.size(-2)):
        rho_k = k[..., : t + 1, :].softmax(dim=-2)  # (B, H, t+1, dk)
        context = rho_k.transpose(-2, -1) @ v[..., : t + 1, :]  # (B, H, dk, dv)
        outs.append(q[..., t : t + 1, :].softmax(dim=-1) @ context)
    return torch.cat(outs, dim=-2)


def test_linear_order_equals_naive_implied_matrix() -> None:
    q, k, v = _qkv()
    implied = q.softmax(dim=-1) @ k.softmax(dim=-2).transpose(-2, -1)  # (B, H, T, T)
    torch.testing.assert_close(efficient_attention(q, k, v, None), implied @ v, atol=1e-5, rtol=0)
    torch.testing.assert_close(efficient_attention_weights(q, k, None), implied)


def test_weights_rows_sum_to_one_and_padding_is_exactly_zero() -> None:
    q, k, _ = _qkv()
    key_mask = torch.ones(B, T, dtype=torch.bool)
    key_mask[1, 4:] = False
    weights = efficient_attention_weights(q, k, key_mask)  # (B, H, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T, dtype=torch.float64))
    assert torch.all(weights[1, :, :, 4:] == 0)
    assert torch.all(weights[1, :, :, :4] > 0)


def test_masked_keys_contribute_nothing() -> None:
    q, k, v = _qkv()
    key_mask = torch.ones(B, T, dtype=torch.bool)
    key_mask[0, 5:] = False
    out = efficient_attention(q, k, v, key_mask)
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 5:] = 100 * torch.randn(H, T - 5, DK, dtype=torch.float64)
    v2[0, :, 5:] = 100 * torch.randn(H, T - 5, DV, dtype=torch.float64)
    torch.testing.assert_close(efficient_attention(q, k2, v2, key_mask), out)
    # the padded sentence gives what it gives alone, unpadded
    alone = efficient_attention(q[:1], k[:1, :, :5], v[:1, :, :5], None)
    torch.testing.assert_close(out[:1], alone)
    # the full row is untouched by the mask
    torch.testing.assert_close(out[1], efficient_attention(q, k, v, None)[1])


@pytest.mark.parametrize("chunk_size", [1, 3, 32])
def test_causal_equals_naive_loop(chunk_size: int) -> None:
    q, k, v = _qkv()
    expected = _naive_causal(q, k, v)
    got = causal_efficient_attention(q, k, v, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected)


def test_causal_future_does_not_leak() -> None:
    q, k, v = _qkv()
    out = causal_efficient_attention(q, k, v, chunk_size=3)
    for t in range(T - 1):
        q2, k2, v2 = q.clone(), k.clone(), v.clone()
        for x in (q2, k2, v2):
            x[..., t + 1, :] += 10.0
        changed = causal_efficient_attention(q2, k2, v2, chunk_size=3)
        torch.testing.assert_close(changed[..., : t + 1, :], out[..., : t + 1, :])
        assert not torch.allclose(changed[..., t + 1, :], out[..., t + 1, :])


def test_incremental_steps_equal_full_causal_form() -> None:
    q, k, v = _qkv()
    full = causal_efficient_attention(q, k, v, chunk_size=3)
    state: EfficientState | None = None
    for t in range(T):
        step = slice(t, t + 1)
        out, state = causal_efficient_step(q[..., step, :], k[..., step, :], v[..., step, :], state)
        assert out.shape == (B, H, 1, DV)
        assert state.context.shape == (B, H, DK, DV) and state.log_norm.shape == (B, H, DK)
        torch.testing.assert_close(out, full[..., step, :])


def test_causal_is_stable_for_large_inputs_in_float32() -> None:
    # ×50 puts key features hundreds apart: exp(k - max over the sequence) underflows to 0
    # at early positions, and exp(k - running value) overflows for future keys.
    q, k, v = (x.float() for x in _qkv(t=40, scale=50.0))
    expected = _naive_causal(q.double(), k.double(), v.double()).float()
    full = causal_efficient_attention(q, k, v, chunk_size=8)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(full, expected, atol=1e-4, rtol=1e-4)
    state = None
    for t in range(q.size(-2)):
        step = slice(t, t + 1)
        out, state = causal_efficient_step(q[..., step, :], k[..., step, :], v[..., step, :], state)
        torch.testing.assert_close(out, expected[..., step, :], atol=1e-4, rtol=1e-4)
    # the non-causal form is stable too: both softmaxes subtract their maximum
    torch.testing.assert_close(
        efficient_attention(q, k, v, None),
        efficient_attention(q.double(), k.double(), v.double(), None).float(),
    )


def test_causal_weights_match_naive_and_outputs() -> None:
    q, k, v = _qkv()
    weights = causal_efficient_weights(q, k)  # (B, H, T, T)
    for t in range(T):
        rho_k = k[..., : t + 1, :].softmax(dim=-2)  # (B, H, t+1, dk)
        row = q[..., t, :].softmax(dim=-1).unsqueeze(-2) @ rho_k.transpose(-2, -1)
        torch.testing.assert_close(weights[..., t : t + 1, : t + 1], row)
    assert torch.all(weights.triu(1) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T, dtype=torch.float64))
    torch.testing.assert_close(weights @ v, causal_efficient_attention(q, k, v))


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_gradients_are_finite(scale: float) -> None:
    q, k, v = (x.float().requires_grad_() for x in _qkv(t=12, scale=scale))
    key_mask = torch.ones(B, 12, dtype=torch.bool)
    key_mask[1, 9:] = False
    loss = (
        efficient_attention(q, k, v, key_mask).square().sum()
        + causal_efficient_attention(q, k, v, chunk_size=5).square().sum()
    )
    loss.backward()
    for x in (q, k, v):
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
    # padded keys and values get no gradient from the masked (non-causal) term alone
    k.grad = v.grad = None
    efficient_attention(q, k, v, key_mask).square().sum().backward()
    assert torch.all(k.grad[1, :, 9:] == 0) and torch.all(v.grad[1, :, 9:] == 0)
