"""Attention scorers for recurrent decoders, against naive per-position references."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.models.attention.rnn_scorers import (
    AdditiveAttention,
    LuongDotAttention,
    LuongGeneralAttention,
    build_rnn_attention,
)

B, S, DQ, DK, A = 3, 5, 6, 8, 7
KINDS = ("bahdanau", "luong_dot", "luong_general")


def make(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    # dot attention needs equal query and key sizes
    return build_rnn_attention(kind, DK if kind == "luong_dot" else DQ, DK, A)


def inputs(kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    query = torch.randn(B, DK if kind == "luong_dot" else DQ)
    keys = torch.randn(B, S, DK)
    # lengths 5, 3, 1: a full row, a padded row, a single real token
    mask = torch.arange(S)[None, :] < torch.tensor([5, 3, 1])[:, None]
    return query, keys, mask


def naive_score(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor) -> float:
    """The score of one query vector (Dq,) against one key vector (Dk,), written out."""
    if isinstance(attn, AdditiveAttention):
        w_s, b_s = attn.query_layer.weight, attn.query_layer.bias
        w_h, v = attn.key_layer.weight, attn.energy_layer.weight[0]
        total = 0.0
        for a in range(v.numel()):
            pre = b_s[a] + sum(w_s[a, i] * q[i] for i in range(q.numel()))
            pre = pre + sum(w_h[a, j] * k[j] for j in range(k.numel()))
            total += float(v[a]) * math.tanh(float(pre))
        return total
    if isinstance(attn, LuongDotAttention):
        return sum(float(q[i] * k[i]) for i in range(q.numel()))
    w = attn.key_layer.weight  # (Dq, Dk)
    return sum(float(q[i] * w[i, j] * k[j]) for i in range(q.numel()) for j in range(k.numel()))


def naive_attention(
    attn: torch.nn.Module, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sentence, per-position loops: scores, softmax over real positions, weighted sum."""
    contexts, weights = [], []
    for b in range(query.size(0)):
        real = [j for j in range(keys.size(1)) if mask[b, j]]
        scores = {j: naive_score(attn, query[b], keys[b, j]) for j in real}
        top = max(scores.values())
        norm = sum(math.exp(s - top) for s in scores.values())
        row = [math.exp(scores[j] - top) / norm if j in scores else 0.0 for j in range(S)]
        weights.append(row)
        contexts.append(sum(row[j] * keys[b, j] for j in real))
    return torch.stack(contexts), torch.tensor(weights)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_naive_reference(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    with torch.no_grad():
        context, weights = attn(query, attn.project_keys(keys), keys, mask)
        ref_context, ref_weights = naive_attention(attn, query, keys, mask)
    assert context.shape == (B, DK) and weights.shape == (B, S)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(context, ref_context, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_normalised_and_exactly_zero_on_padding(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    _, weights = attn(query, attn.project_keys(keys), keys, mask)
    assert torch.all(weights[~mask] == 0.0)
    assert torch.all(weights[mask] > 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    # a single real token takes all the weight
    assert weights[2, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_do_not_change_context(kind: str) -> None:
    attn = make(kind)
    query, keys, mask = inputs(kind)
    garbage = keys.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), DK)
    context, weights = attn(query, attn.project_keys(keys), keys, mask)
    context2, weights2 = attn(query, attn.project_keys(garbage), garbage, mask)
    torch.testing.assert_close(context2, context, atol=0, rtol=0)
    torch.testing.assert_close(weights2, weights, atol=0, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_keys_projected_once_serve_every_step(kind: str) -> None:
    attn = make(kind)
    _, keys, mask = inputs(kind)
    proj = attn.project_keys(keys)
    torch.manual_seed(2)
    for _ in range(3):  # three decoder steps, three different queries
        query = torch.randn(B, DK if kind == "luong_dot" else DQ)
        once = attn(query, proj, keys, mask)
        fresh = attn(query, attn.project_keys(keys), keys, mask)
        torch.testing.assert_close(once, fresh, atol=0, rtol=0)


def test_projection_shapes() -> None:
    _, keys, _ = inputs("bahdanau")
    assert make("bahdanau").project_keys(keys).shape == (B, S, A)
    assert make("luong_general").project_keys(keys).shape == (B, S, DQ)
    assert make("luong_dot").project_keys(keys) is keys


def test_builder_types_and_errors() -> None:
    assert isinstance(build_rnn_attention("bahdanau", DQ, DK, A), AdditiveAttention)
    assert isinstance(build_rnn_attention("luong_dot", DK, DK, A), LuongDotAttention)
    assert isinstance(build_rnn_attention("luong_general", DQ, DK, A), LuongGeneralAttention)
    with pytest.raises(ValueError, match="bahdanau, luong_dot, luong_general"):
        build_rnn_attention("dot", DQ, DK, A)
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        LuongDotAttention(DQ, DK)
