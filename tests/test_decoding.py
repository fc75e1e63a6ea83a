"""Greedy and beam search against naive references, on a tiny seeded attention model."""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config import DecodeConfig
from seq2seq.decoding import Hypothesis, beam_search, greedy_search, search
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID

V_SRC, V_TGT = 12, 9
HEADS = 2
DIM, SHARPNESS, EOS_SLOPE = 16, 3.0, 0.7


class ToyState(NamedTuple):
    hidden: Tensor  # (B, D)
    context: Tensor  # (B, D) previous attention context, fed back as input
    steps: Tensor  # (B,) tokens read so far
    unused: Tensor | None  # a None leaf, as models with optional state fields have


class ToyModel(nn.Module):
    """A GRU decoder with multi-head dot attention over the embedded source (one layer).

    EOS grows likelier as the output outgrows the source, so hypotheses end at varied lengths.
    """

    max_positions = None  # no limit on lengths

    def __init__(self, tgt_vocab: int, dim: int, sharpness: float, eos_slope: float) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(V_SRC, dim)
        self.tgt_embed = nn.Embedding(tgt_vocab, dim)
        self.cell = nn.GRUCell(2 * dim, dim)
        self.query = nn.Linear(dim, dim)
        self.out = nn.Linear(2 * dim, tgt_vocab)
        self.sharpness = sharpness
        self.eos_slope = eos_slope

    def encode(self, src: Tensor, src_mask: Tensor) -> dict[str, Tensor]:
        return {"keys": self.src_embed(src)}  # (B, S, D)

    def init_state(self, memory: dict[str, Tensor], src_mask: Tensor) -> ToyState:
        weights = src_mask[..., None].float()  # (B, S, 1)
        mean = (memory["keys"] * weights).sum(1) / weights.sum(1)  # (B, D)
        steps = torch.zeros(mean.size(0), dtype=torch.long, device=mean.device)
        return ToyState(torch.tanh(mean), torch.zeros_like(mean), steps, None)

    def decode_step(
        self,
        memory: dict[str, Tensor],
        src_mask: Tensor,
        prev_tokens: Tensor,
        state: ToyState,
        need_weights: bool = False,
    ) -> tuple[Tensor, ToyState, Tensor | None]:
        keys = memory["keys"]
        batch, src_len, dim = keys.shape
        x = torch.cat([self.tgt_embed(prev_tokens), state.context], dim=-1)  # (B, 2D)
        hidden = self.cell(x, state.hidden)  # (B, D)
        q = self.query(hidden).view(batch, HEADS, dim // HEADS)  # (B, H, d)
        k = keys.view(batch, src_len, HEADS, dim // HEADS)  # (B, S, H, d)
        scores = torch.einsum("bhd,bshd->bhs", q, k) / math.sqrt(dim // HEADS)
        alpha = scores.masked_fill(~src_mask[:, None, :], -math.inf).softmax(-1)  # (B, H, S)
        context = torch.einsum("bhs,bshd->bhd", alpha, k).reshape(batch, dim)  # (B, D)
        logits = self.sharpness * self.out(torch.cat([hidden, context], dim=-1))  # (B, V)
        steps = state.steps + 1
        overshoot = (steps - src_mask.sum(1)).float()  # (B,)
        logits[:, EOS_ID] += self.eos_slope * overshoot
        new_state = ToyState(hidden, context, steps, None)
        return logits, new_state, alpha[:, None] if need_weights else None


class ScriptedModel(nn.Module):
    """Next-token log-probs read from a table indexed by (step, previous token)."""

    max_positions = None  # no limit on lengths

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.log())  # (T, V, V) probabilities -> log-probs

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        return src_mask.float()  # (B, S)

    def init_state(self, memory: Tensor, src_mask: Tensor) -> Tensor:
        return torch.zeros(memory.size(0), dtype=torch.long)  # (B,) steps taken

    def decode_step(
        self,
        memory: Tensor,
        src_mask: Tensor,
        prev_tokens: Tensor,
        state: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        logits = self.table[state.clamp(max=self.table.size(0) - 1), prev_tokens]  # (B, V)
        uniform = (memory / memory.sum(1, keepdim=True))[:, None, None]  # (B, 1, 1, S)
        return logits, state + 1, uniform if need_weights else None


def make_model(seed: int = 0, tgt_vocab: int = V_TGT) -> ToyModel:
    torch.manual_seed(seed)
    return ToyModel(tgt_vocab, dim=DIM, sharpness=SHARPNESS, eos_slope=EOS_SLOPE).eval()


def make_batch(seed: int = 0, batch: int = 6, max_src: int = 6) -> tuple[Tensor, Tensor]:
    """Right-padded random sources with lengths 1..max_src: ``src`` and ``src_mask`` (B, S)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_src + 1, (batch,), generator=gen)
    lengths[0] = max_src
    src_mask = torch.arange(max_src)[None, :] < lengths[:, None]  # (B, S)
    src = torch.randint(4, V_SRC, (batch, max_src), generator=gen).masked_fill(~src_mask, PAD_ID)
    return src, src_mask


def teacher_force(
    model: ToyModel, src: Tensor, src_mask: Tensor, tokens: list[int]
) -> tuple[float, Tensor, Tensor]:
    """One sentence (S,): summed log-probs of tokens + EOS, the next-token log-probs (V,)
    after ``tokens``, and the cross-attention (1, H, T, S_real) with T = len(tokens) + 1."""
    src, src_mask = src[None, src_mask], src_mask[None, src_mask]  # drop the padding
    memory = model.encode(src, src_mask)
    state = model.init_state(memory, src_mask)
    total, attention = 0.0, []
    for prev, nxt in zip([BOS_ID, *tokens], [*tokens, EOS_ID], strict=True):
        logits, state, alpha = model.decode_step(
            memory, src_mask, torch.tensor([prev]), state, need_weights=True
        )
        logp = torch.log_softmax(logits[0], dim=-1)  # (V,)
        total += logp[nxt].item()
        attention.append(alpha[0])  # (1, H, S_real)
    return total, logp, torch.stack(attention, dim=2)


def lp(num_tokens: int, alpha: float) -> float:
    return ((5 + num_tokens) / 6) ** alpha


def normalised(hyp: Hypothesis, alpha: float) -> float:
    return hyp.score / lp(len(hyp.tokens) + 1, alpha)


def allowed(logp: Tensor, at_limit: bool) -> Tensor:
    """Next-token log-probs with PAD/BOS removed, and only EOS left at the length cap."""
    logp = logp.clone()
    logp[[PAD_ID, BOS_ID]] = -math.inf
    if at_limit:
        keep = logp[EOS_ID].clone()
        logp[:] = -math.inf
        logp[EOS_ID] = keep
    return logp


def naive_greedy(model: ToyModel, src: Tensor, src_mask: Tensor, limit: int) -> list[int]:
    tokens: list[int] = []
    while True:
        _, logp, _ = teacher_force(model, src, src_mask, tokens)
        best = int(allowed(logp, len(tokens) >= limit).argmax())
        if best == EOS_ID:
            return tokens
        tokens.append(best)


def naive_beam(
    model: ToyModel, src: Tensor, src_mask: Tensor, k: int, alpha: float, limit: int
) -> list[tuple[float, list[int]]]:
    """Every finished hypothesis (normalised score, tokens) of a beam run to the length cap.

    Each step ranks all extensions of the k live hypotheses, keeps the best 2k, sets aside
    those ending in EOS and continues with the best k others (fairseq's scheme).
    """
    live: list[tuple[float, list[int]]] = [(0.0, [])]
    finished = []
    while live:
        candidates = []
        for score, tokens in live:
            _, logp, _ = teacher_force(model, src, src_mask, tokens)
            logp = allowed(logp, len(tokens) >= limit)
            for token in range(logp.numel()):
                if logp[token] > -math.inf:
                    candidates.append((score + logp[token].item(), tokens + [token]))
        candidates.sort(key=lambda c: -c[0])
        top = candidates[: 2 * k]
        finished += [(sc / lp(len(tok), alpha), tok[:-1]) for sc, tok in top if tok[-1] == EOS_ID]
        live = [(sc, tok) for sc, tok in top if tok[-1] != EOS_ID][:k]
    return sorted(finished, key=lambda f: -f[0])


def limits_of(src_mask: Tensor, a: float, b: int) -> list[int]:
    return [math.floor(a * n + b) for n in src_mask.sum(1).tolist()]


def test_greedy_matches_naive_reference_stops_at_eos_and_respects_max_length():
    model = make_model()
    src, src_mask = make_batch(batch=8)
    a, b = 1.5, 2
    hyps = greedy_search(model, src, src_mask, a, b)
    limits = limits_of(src_mask, a, b)
    for i, (hyp, limit) in enumerate(zip(hyps, limits, strict=True)):
        assert hyp.tokens == naive_greedy(model, src[i], src_mask[i], limit)
        assert hyp.score == pytest.approx(teacher_force(model, src[i], src_mask[i], hyp.tokens)[0])
        assert len(hyp.tokens) <= limit and hyp.attention is None
        alone = greedy_search(model, src[i : i + 1], src_mask[i : i + 1], a, b)[0]
        assert alone.tokens == hyp.tokens and alone.score == pytest.approx(hyp.score)
    # the batch exercises both endings: EOS chosen freely, and EOS forced at the cap
    assert any(len(h.tokens) < n for h, n in zip(hyps, limits, strict=True))
    assert any(len(h.tokens) == n for h, n in zip(hyps, limits, strict=True))


def test_max_length_zero_gives_empty_hypotheses():
    model = make_model()
    src, src_mask = make_batch(batch=3)
    for hyp in greedy_search(model, src, src_mask, 0.0, 0):
        assert hyp.tokens == []
    for hyps in beam_search(model, src, src_mask, 3, 1.0, 0.0, 0, nbest=2):
        assert [h.tokens for h in hyps] == [[]]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_one_follows_greedy_and_keeps_the_better_ending(alpha: float):
    """Width 1 extends greedy's path, but also sets aside the EOS ranked second on the way,
    so it returns greedy's hypothesis or an earlier ending that scores better."""
    model = make_model(1)
    src, src_mask = make_batch(1, batch=8)
    greedy = greedy_search(model, src, src_mask, 1.5, 3, need_weights=True)
    beam = beam_search(model, src, src_mask, 1, alpha, 1.5, 3, need_weights=True)
    limits = limits_of(src_mask, 1.5, 3)
    differs = 0
    for i, (g, [b]) in enumerate(zip(greedy, beam, strict=True)):
        reference = naive_beam(model, src[i], src_mask[i], 1, alpha, limits[i])
        assert b.tokens == reference[0][1]
        assert normalised(b, alpha) >= normalised(g, alpha) - 1e-6
        if b.tokens == g.tokens:
            assert b.score == pytest.approx(g.score, abs=1e-5)
            torch.testing.assert_close(b.attention, g.attention)
        else:
            assert b.tokens == g.tokens[: len(b.tokens)]  # an ending on greedy's own path
            differs += 1
    assert differs < len(greedy)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_never_scores_below_greedy(seed: int, alpha: float):
    model = make_model(seed)
    src, src_mask = make_batch(seed + 10, batch=8)
    greedy = greedy_search(model, src, src_mask, 1.5, 2)
    beam = beam_search(model, src, src_mask, 4, alpha, 1.5, 2)
    for i, (g, [b]) in enumerate(zip(greedy, beam, strict=True)):
        g_score = teacher_force(model, src[i], src_mask[i], g.tokens)[0]
        b_score = teacher_force(model, src[i], src_mask[i], b.tokens)[0]
        assert b.score == pytest.approx(b_score, abs=1e-4)
        assert (
            b_score / lp(len(b.tokens) + 1, alpha) >= g_score / lp(len(g.tokens) + 1, alpha) - 1e-5
        )


def test_batched_beam_equals_each_sentence_alone():
    model = make_model(2)
    src, src_mask = make_batch(2, batch=6)
    batched = beam_search(model, src, src_mask, 3, 0.6, 1.5, 2, nbest=3)
    for i, hyps in enumerate(batched):
        alone = beam_search(model, src[i : i + 1], src_mask[i : i + 1], 3, 0.6, 1.5, 2, nbest=3)[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-5)


@pytest.mark.parametrize("seed", [1, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_early_stopping_keeps_the_result_of_a_beam_run_to_max_length(seed: int, alpha: float):
    """The stopping bound is exact: the n-best equal a naive beam's that never stops early."""
    model = make_model(seed)
    src, src_mask = make_batch(seed, batch=8, max_src=4)
    limits = limits_of(src_mask, 1.5, 2)
    results = beam_search(model, src, src_mask, 4, alpha, 1.5, 2, nbest=3)
    for i, hyps in enumerate(results):
        reference = naive_beam(model, src[i], src_mask[i], 4, alpha, limits[i])[:3]
        assert [h.tokens for h in hyps] == [tokens for _, tokens in reference]
        assert [normalised(h, alpha) for h in hyps] == pytest.approx(
            [score for score, _ in reference], abs=1e-5
        )


def test_nbest_distinct_sorted_and_scores_are_model_log_probs():
    model = make_model(4)
    src, src_mask = make_batch(4, batch=5)
    alpha = 1.0
    for i, hyps in enumerate(beam_search(model, src, src_mask, 5, alpha, 1.5, 2, nbest=3)):
        assert len(hyps) == 3
        assert len({tuple(h.tokens) for h in hyps}) == 3
        recomputed = [teacher_force(model, src[i], src_mask[i], h.tokens)[0] for h in hyps]
        assert [h.score for h in hyps] == pytest.approx(recomputed, abs=1e-4)
        ranking = [s / lp(len(h.tokens) + 1, alpha) for s, h in zip(recomputed, hyps, strict=True)]
        assert ranking == sorted(ranking, reverse=True)
        assert all(PAD_ID not in h.tokens and BOS_ID not in h.tokens for h in hyps)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_shape_sums_to_one_and_matches_teacher_forcing(beam_size: int):
    model = make_model(5)
    src, src_mask = make_batch(5, batch=5)
    decode = DecodeConfig(beam_size=beam_size, length_penalty=1.0, max_len_a=1.5, max_len_b=2)
    hyps = [nbest[0] for nbest in search(model, src, src_mask, decode, need_weights=True)]
    for i, hyp in enumerate(hyps):
        real = int(src_mask[i].sum())
        assert hyp.attention.shape == (1, HEADS, len(hyp.tokens) + 1, real)
        assert hyp.attention.device.type == "cpu"
        torch.testing.assert_close(hyp.attention.sum(-1), torch.ones(1, HEADS, len(hyp.tokens) + 1))
        expected = teacher_force(model, src[i], src_mask[i], hyp.tokens)[2]
        torch.testing.assert_close(hyp.attention, expected)


def assert_exhaustive_nbest(
    model: ToyModel,
    src: Tensor,
    src_mask: Tensor,
    results: list[list[Hypothesis]],
    vocab: int,
    limit: int,
    alpha: float,
) -> None:
    """Each 5-best list equals the best 5 of all hypotheses of at most ``limit`` tokens."""
    content = [t for t in range(vocab) if t not in (PAD_ID, BOS_ID, EOS_ID)]
    everything = [
        list(seq) for n in range(limit + 1) for seq in itertools.product(content, repeat=n)
    ]
    for i, hyps in enumerate(results):
        scored = [
            (teacher_force(model, src[i], src_mask[i], seq)[0] / lp(len(seq) + 1, alpha), seq)
            for seq in everything
        ]
        scored.sort(key=lambda s: -s[0])
        top = scored[:5]
        assert [h.tokens for h in hyps] == [seq for _, seq in top]
        assert [normalised(h, alpha) for h in hyps] == pytest.approx(
            [score for score, _ in top], abs=1e-5
        )


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_best_on_a_tiny_vocabulary(alpha: float):
    """V = 6 leaves 3 content tokens; with at most 3 tokens there are 40 hypotheses in all."""
    vocab, limit = 6, 3
    model = make_model(6, tgt_vocab=vocab)
    src, src_mask = make_batch(6, batch=3, max_src=4)
    # a beam as wide as the widest step (9 live beams x 4 continuations) never prunes
    results = beam_search(model, src, src_mask, 40, alpha, 0.0, limit, nbest=5)
    assert_exhaustive_nbest(model, src, src_mask, results, vocab, limit, alpha)


def test_search_dispatches_and_checks_nbest():
    model = make_model(7)
    src, src_mask = make_batch(7, batch=4)
    greedy = greedy_search(model, src, src_mask, 1.5, 2)
    decode = DecodeConfig(beam_size=1, length_penalty=1.0, max_len_a=1.5, max_len_b=2)
    one = search(model, src, src_mask, decode, need_weights=False)
    assert [n[0].tokens for n in one] == [h.tokens for h in greedy]
    decode.beam_size = 3
    best = search(model, src, src_mask, decode, need_weights=False)
    beam = beam_search(model, src, src_mask, 3, 1.0, 1.5, 2, nbest=3)
    assert [n[0].tokens for n in best] == [hyps[0].tokens for hyps in beam]
    decode.nbest = 3  # beam 3 with nbest 3: every hypothesis of the beam, best first
    assert [[h.tokens for h in n] for n in search(model, src, src_mask, decode, False)] == [
        [h.tokens for h in hyps] for hyps in beam
    ]
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, src, src_mask, 2, 1.0, 1.5, 2, nbest=3)


@pytest.mark.parametrize("cap", [9, 12])
def test_length_penalty_lets_a_long_confident_hypothesis_beat_a_short_one_found_first(cap: int):
    """EOS first (p=.6) beats A (p=.3) on raw score, but A A ... A EOS is almost certain after
    the first A and wins once normalised, so the search must look past the short one. With a
    cap of 9 the winner has exactly the most tokens allowed, where the stopping bound is tight."""
    vocab, a_tok, b_tok = 6, 4, 5
    table = torch.zeros(12, vocab, vocab)
    table[:, :, [a_tok, b_tok]] = 0.5  # rows the script does not reach
    table[0, BOS_ID] = torch.tensor([0, 0, 0, 0.6, 0.3, 0.1])
    table[1:, a_tok] = torch.tensor([0, 0, 0, 0.0007, 0.999, 0.0003])
    table[9, a_tok] = torch.tensor([0, 0, 0, 0.999, 0.0005, 0.0005])  # EOS after 9 A's
    table[1:, b_tok] = torch.tensor([0, 0, 0, 0.9, 0, 0.1])
    model = ScriptedModel(table)
    src, src_mask = make_batch(batch=2)
    long_score = math.log(0.3) + 9 * math.log(0.999)
    for alpha, tokens, score in [(0.0, [], math.log(0.6)), (1.0, [a_tok] * 9, long_score)]:
        for hyps in beam_search(model, src, src_mask, 2, alpha, 0.0, cap):
            assert hyps[0].tokens == tokens
            assert hyps[0].score == pytest.approx(score, abs=1e-5)
    assert all(h.tokens == [] for h in greedy_search(model, src, src_mask, 0.0, cap))


@pytest.mark.parametrize("seed", [6, 7, 8])
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_finished_hypotheses_do_not_narrow_the_beam(seed: int, alpha: float):
    """A model that often ends early: with V = 6 (3 content tokens) and at most 3 tokens, at
    most 27 prefixes are ever live at once, so a beam of 27 that keeps 27 live beams whatever
    ends sees all 40 hypotheses and must return the exhaustive n-best. A beam whose endings
    take live places (today's 36 extensions of 9 prefixes into 27 places) prunes some."""
    vocab, limit = 6, 3
    torch.manual_seed(seed)
    model = ToyModel(vocab, dim=DIM, sharpness=SHARPNESS, eos_slope=-1.5).eval()  # EOS early
    src, src_mask = make_batch(seed, batch=4, max_src=4)
    results = beam_search(model, src, src_mask, 27, alpha, 0.0, limit, nbest=5)
    assert_exhaustive_nbest(model, src, src_mask, results, vocab, limit, alpha)
