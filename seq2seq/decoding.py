"""Greedy and batched beam search over the models' one-step interface.

Both searches see a model only through ``encode`` / ``init_state`` / ``decode_step`` and
reorder its memory and state with :func:`select_batch`, so they serve every model family.

Conventions shared by both:

- A sentence of ``S`` real source tokens gets at most ``floor(a * S + b)`` target tokens
  before EOS; at that length EOS is the only token allowed, so every hypothesis ends in
  EOS, its score includes EOS's log-probability, and its attention has one row per token
  plus one for the EOS step.
- PAD and BOS are never produced: PAD marks finished rows and BOS only starts a sentence.
- Beam search ranks finished hypotheses by score / lp(|Y|), the GNMT length penalty
  lp(|Y|) = ((5 + |Y|) / 6) ** alpha, with |Y| the number of scored tokens (EOS included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.models.base import Memory, Seq2SeqModel, State, position_limits, select_batch
from seq2seq.special_tokens import BOS_ID, EOS_ID, PAD_ID

# Greedy decoding asks the device whether every sentence has finished only this often: each
# question is a host sync, and a few extra steps on finished rows cost less than a sync a step.
GREEDY_SYNC_EVERY = 4


@dataclass
class Hypothesis:
    """One decoded target sentence."""

    tokens: list[int]  # without BOS/EOS
    score: float  # sum of token log-probs (EOS included), before length penalty
    attention: Tensor | None  # (L, H, T, S_real) on CPU, T = len(tokens) + 1 (EOS step included)


def max_lengths(
    src_mask: Tensor, max_len_a: float, max_len_b: int, max_positions: int | None = None
) -> list[int]:
    """Most target tokens (EOS excluded) per sentence: floor(a * real source length + b).

    With ``max_positions`` (the model's limit) the decoder's input, BOS and the tokens before
    the final EOS, never outgrows it.
    """
    _, tgt_limit = position_limits(max_positions)
    cap = math.inf if tgt_limit is None else tgt_limit
    return [
        int(max(0, min(cap, math.floor(max_len_a * n + max_len_b))))
        for n in src_mask.sum(dim=1).tolist()
    ]


def gnmt_penalty(num_tokens: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha, by which beam scores are divided."""
    return ((5.0 + num_tokens) / 6.0) ** alpha


def _log_probs(logits: Tensor, at_limit: Tensor) -> Tensor:
    """Log-probs (N, V) of the next token; rows where ``at_limit`` (N,) may only end."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    logp[:, [PAD_ID, BOS_ID]] = -math.inf
    eos_only = torch.full_like(logp, -math.inf)
    eos_only[:, EOS_ID] = logp[:, EOS_ID]
    return torch.where(at_limit[:, None], eos_only, logp)


def _real_source(attention: Tensor, src_mask: Tensor) -> Tensor:
    """Attention (..., S) restricted to the real source positions of ``src_mask`` (S,)."""
    return attention[..., src_mask]


@torch.inference_mode()
def greedy_search(
    model: Seq2SeqModel,
    src: Tensor,
    src_mask: Tensor,
    max_len_a: float,
    max_len_b: int,
    need_weights: bool = False,
) -> list[Hypothesis]:
    """The most probable next token at every step, per sentence, until EOS or the length cap.

    Every ``GREEDY_SYNC_EVERY`` steps the sentences that have ended leave the batch, so the
    steps after a sentence's EOS cost (almost) nothing.
    """
    batch, device = src.size(0), src.device
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.max_positions)
    steps = max(limits) + 1
    limit = torch.tensor(limits, device=device)  # (n,) for the n sentences still decoding
    memory = model.encode(src, src_mask)
    state = model.init_state(memory, src_mask)
    rows = torch.arange(batch, device=device)  # (n,) each active row's sentence
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # (n,)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (n,)
    out_tokens = torch.full((batch, steps), PAD_ID, dtype=torch.long, device=device)  # (B, T)
    out_scores = torch.zeros(batch, device=device)  # (B,)
    out_attention: Tensor | None = None  # (B, L, H, T, S)
    host_mask = src_mask.cpu()  # (B, S) before any sentence leaves the batch
    for t in range(steps):
        logits, state, attention = model.decode_step(memory, src_mask, prev, state, need_weights)
        best, tokens = _log_probs(logits, limit <= t).max(dim=-1)  # (n,), (n,)
        out_scores.index_add_(0, rows, best.masked_fill(finished, 0.0))
        tokens = tokens.masked_fill(finished, PAD_ID)
        out_tokens[:, t].index_copy_(0, rows, tokens)
        if need_weights:
            if out_attention is None:
                layers, heads, length = attention.shape[1:]
                out_attention = attention.new_zeros(batch, layers, heads, steps, length)
            out_attention[:, :, :, t].index_copy_(0, rows, attention)  # (n, L, H, S)
        finished |= tokens == EOS_ID
        prev = tokens
        if t % GREEDY_SYNC_EVERY == GREEDY_SYNC_EVERY - 1:
            keep = (~finished).nonzero().squeeze(1)  # (n',) one host sync
            if keep.numel() == 0:
                break
            if keep.numel() < rows.numel():
                memory, state = select_batch(memory, keep), select_batch(state, keep)
                rows, prev, finished, limit, src_mask = (
                    x.index_select(0, keep) for x in (rows, prev, finished, limit, src_mask)
                )

    return _greedy_hypotheses(out_tokens, out_scores, out_attention, host_mask)


def _greedy_hypotheses(
    tokens: Tensor, scores: Tensor, attention: Tensor | None, host_mask: Tensor
) -> list[Hypothesis]:
    """Greedy search's outputs, tokens (B, T) up to EOS, scores (B,) and attention
    (B, L, H, T, S), as hypotheses: one host transfer for the whole batch."""
    all_tokens, all_scores = tokens.tolist(), scores.tolist()
    weights = attention.float().cpu() if attention is not None else None
    hyps = []
    for b, row in enumerate(all_tokens):
        length = row.index(EOS_ID)  # the forced EOS at the limit guarantees one
        sentence_attention = None
        if weights is not None:
            sentence_attention = _real_source(weights[b, :, :, : length + 1], host_mask[b])
        hyps.append(Hypothesis(row[:length], all_scores[b], sentence_attention))
    return hyps


@dataclass
class _Finished:
    """A hypothesis that produced EOS, with its length-normalised ranking score."""

    normalised: float
    hypothesis: Hypothesis


@dataclass
class _Beams:
    """The live beams of the n sentences still decoding, as rows ``sentence * k + beam``."""

    memory: Memory  # the encoder's memory, k copies per sentence
    state: State  # the decoder state after the tokens so far
    mask: Tensor  # (n*k, S) source mask
    limit: Tensor  # (n*k,) most target tokens before EOS
    scores: Tensor  # (n*k,) sum of the tokens' log-probs
    prev: Tensor  # (n*k,) the last token, input of the next step
    history: Tensor  # (n*k, t) the tokens so far
    attention: Tensor | None  # (n*k, L, H, t, S) their cross-attention, if asked
    active: list[int]  # original index of each sentence still decoding


class _Step(NamedTuple):
    """One step's choice per sentence: its top 2k extensions and the k of them that stay live."""

    scores: Tensor  # (n, 2k) the best extensions' scores, best first
    tokens: Tensor  # (n, 2k) the token each appends
    rows: Tensor  # (n, 2k) the beam row each extends
    live: Tensor  # (n, k) scores of the best k that do not end in EOS (-inf: fewer exist)
    picked: Tensor  # (n, k) where those k stand among the 2k


@torch.inference_mode()
def beam_search(
    model: Seq2SeqModel,
    src: Tensor,
    src_mask: Tensor,
    beam_size: int,
    length_penalty: float,
    max_len_a: float,
    max_len_b: int,
    nbest: int = 1,
    need_weights: bool = False,
) -> list[list[Hypothesis]]:
    """Up to ``nbest`` finished hypotheses per sentence, best (length-normalised) first.

    All sentences and their beams decode together as rows ``sentence * k + beam``. Each step
    ranks the top 2k extensions of a sentence's k live beams (fairseq's scheme): those that
    end in EOS are set aside as finished, and the best k others stay live, so finishing never
    narrows the beam (at most k of the 2k end, one per beam). A sentence leaves the batch once
    ``nbest`` finished hypotheses provably beat everything its live beams can still become.
    """
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"need 1 <= nbest <= beam_size, got nbest={nbest}, beam_size={beam_size}")
    limits = max_lengths(src_mask, max_len_a, max_len_b, model.max_positions)
    # The longest any hypothesis of a sentence can get (its tokens plus EOS) fixes the best
    # length penalty still reachable, used by the stopping rule (_still_open).
    limit_penalty = [gnmt_penalty(n + 1, length_penalty) for n in limits]
    host_mask = src_mask.cpu()
    beams = _start(model, src, src_mask, beam_size, limits)
    finished: list[list[_Finished]] = [[] for _ in beams.active]
    for t in range(max(limits) + 1):
        candidates, state, attention = _expand(model, beams, t, need_weights)
        step = _select_2k(candidates, beam_size)
        _retire_finished(step, beams, attention, t, length_penalty, host_mask, finished)
        keep = _still_open(
            step.live, beams.active, finished, t, length_penalty, limit_penalty, nbest
        )
        if not keep:
            break
        beams = _reorder(beams, state, attention, step, keep)
    return [
        [f.hypothesis for f in sorted(done_list, key=lambda f: -f.normalised)[:nbest]]
        for done_list in finished
    ]


def _start(model: Seq2SeqModel, src: Tensor, src_mask: Tensor, k: int, limits: list[int]) -> _Beams:
    """k beams per sentence before the first step, all at BOS."""
    device = src.device
    rows = torch.arange(src.size(0), device=device).repeat_interleave(k)  # (B*k,)
    memory = select_batch(model.encode(src, src_mask), rows)
    mask = src_mask.index_select(0, rows)  # (B*k, S)
    # All k beams start identical; only beam 0 is alive, so the first step takes distinct
    # tokens from it instead of copies of the best one.
    scores = torch.full((src.size(0), k), -math.inf, device=device)
    scores[:, 0] = 0.0
    return _Beams(
        memory=memory,
        state=model.init_state(memory, mask),
        mask=mask,
        limit=torch.tensor(limits, device=device).index_select(0, rows),  # (B*k,)
        scores=scores.view(-1),  # (B*k,)
        prev=torch.full_like(rows, BOS_ID),  # (B*k,)
        history=torch.zeros(rows.size(0), 0, dtype=torch.long, device=device),  # (B*k, 0)
        attention=None,
        active=list(range(src.size(0))),
    )


def _expand(
    model: Seq2SeqModel, beams: _Beams, t: int, need_weights: bool
) -> tuple[Tensor, State, Tensor | None]:
    """Step ``t``: the score (n, k*V) of every live beam extended by every token, the decoder
    state after the step and, if asked, the step's cross-attention (n*k, L, H, S)."""
    logits, state, attention = model.decode_step(
        beams.memory, beams.mask, beams.prev, beams.state, need_weights
    )
    logp = _log_probs(logits, beams.limit <= t)  # (n*k, V)
    return (beams.scores[:, None] + logp).view(len(beams.active), -1), state, attention


def _select_2k(candidates: Tensor, k: int) -> _Step:
    """Each sentence's top 2k extensions among ``candidates`` (n, k*V), and the live k."""
    n, vocab = candidates.size(0), candidates.size(1) // k
    top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (n, 2k) each
    top_tokens = top_index % vocab  # (n, 2k)
    offsets = torch.arange(n, device=candidates.device)[:, None] * k  # (n, 1) first row of each
    top_rows = top_index // vocab + offsets  # (n, 2k) the row each candidate extends
    # The best k candidates that do not end stay live (-inf: fewer than k exist).
    live, picked = top_scores.masked_fill(top_tokens == EOS_ID, -math.inf).topk(k, dim=1)
    return _Step(top_scores, top_tokens, top_rows, live, picked)


def _retire_finished(
    step: _Step,
    beams: _Beams,
    attention: Tensor | None,
    t: int,
    alpha: float,
    host_mask: Tensor,
    finished: list[list[_Finished]],
) -> None:
    """Add this step's extensions that end in EOS to ``finished``: one host transfer for all."""
    is_eos = step.tokens == EOS_ID  # (n, 2k)
    ended_at = (is_eos & (step.scores > -math.inf)).view(-1).nonzero().squeeze(1)  # (m,)
    if ended_at.numel() == 0:
        return
    ended_rows = step.rows.view(-1).index_select(0, ended_at)  # (m,) the rows they extend
    ended_tokens = beams.history.index_select(0, ended_rows).tolist()  # (m, t)
    ended_scores = step.scores.view(-1).index_select(0, ended_at).tolist()
    ended_attention = (
        _extend(beams.attention, attention, ended_rows).float().cpu()
        if attention is not None
        else None
    )  # (m, L, H, t+1, S)
    for i, position in enumerate(ended_at.tolist()):
        sentence = beams.active[position // step.scores.size(1)]
        weights = None
        if ended_attention is not None:
            weights = _real_source(ended_attention[i], host_mask[sentence])
        hyp = Hypothesis(ended_tokens[i], ended_scores[i], weights)
        normalised = ended_scores[i] / gnmt_penalty(t + 1, alpha)
        finished[sentence].append(_Finished(normalised, hyp))


def _still_open(
    live: Tensor,
    active: list[int],
    finished: list[list[_Finished]],
    t: int,
    alpha: float,
    limit_penalty: list[float],
    nbest: int,
) -> list[int]:
    """Positions in ``active`` of the sentences whose n-best a live beam (n, k) may still enter.

    A live beam's raw score s <= 0 only falls as tokens (log-probs <= 0) are added, and any
    completion has |Y| between t + 2 (EOS next step) and limit + 1. Dividing a non-positive
    score by a larger penalty raises it, so no completion normalises above
    s / max(lp(t + 2), lp(limit + 1)): for alpha > 0 that is s over the penalty at the length
    cap (not at the current length, which would stop too early), for alpha = 0 just s. Once
    the nbest-th best finished hypothesis reaches the best live beam's bound, nothing left can
    change the result.
    """
    best_live = live.max(dim=1).values.tolist()  # (n,)
    keep = []
    for position, sentence in enumerate(active):
        bound = best_live[position] / max(gnmt_penalty(t + 2, alpha), limit_penalty[sentence])
        done_list = finished[sentence]
        if bound == -math.inf:
            continue
        if len(done_list) >= nbest:
            nth = sorted((f.normalised for f in done_list), reverse=True)[nbest - 1]
            if nth >= bound:
                continue
        keep.append(position)
    return keep


def _reorder(
    beams: _Beams, state: State, attention: Tensor | None, step: _Step, keep: list[int]
) -> _Beams:
    """The beams after ``step``: the live k of each sentence in ``keep``, following the rows
    they extend (decoder ``state``, history and ``attention`` of the step)."""
    k = step.live.size(1)
    origin = step.rows.gather(1, step.picked).view(-1)  # (n*k,) the row each new beam extends
    scores, prev = step.live.view(-1), step.tokens.gather(1, step.picked).view(-1)  # (n*k,)
    memory, mask, limit, active = beams.memory, beams.mask, beams.limit, beams.active
    if len(keep) < len(active):
        kept = torch.tensor(keep, device=origin.device)
        kept_rows = (kept[:, None] * k + torch.arange(k, device=origin.device)).view(-1)  # (n'*k,)
        origin, scores, prev = (x.index_select(0, kept_rows) for x in (origin, scores, prev))
        memory = select_batch(memory, kept_rows)
        mask, limit = mask.index_select(0, kept_rows), limit.index_select(0, kept_rows)
        active = [active[p] for p in keep]
    return _Beams(
        memory=memory,
        state=select_batch(state, origin),
        mask=mask,
        limit=limit,
        scores=scores,
        prev=prev,
        history=torch.cat([beams.history.index_select(0, origin), prev[:, None]], dim=1),
        attention=None if attention is None else _extend(beams.attention, attention, origin),
        active=active,
    )


def _extend(history: Tensor | None, step: Tensor, rows: Tensor) -> Tensor:
    """The attention (m, L, H, t+1, S) of ``rows`` (m,): their ``history`` (N, L, H, t, S)
    followed by this ``step``'s (N, L, H, S)."""
    current = step.index_select(0, rows)[:, :, :, None]  # (m, L, H, 1, S)
    if history is None:
        return current
    return torch.cat([history.index_select(0, rows), current], dim=3)


def search(
    model: Seq2SeqModel, src: Tensor, src_mask: Tensor, decode: DecodeConfig, need_weights: bool
) -> list[list[Hypothesis]]:
    """``decode.nbest`` hypotheses per sentence: greedy search for beam 1 and nbest 1, else
    beam search with a beam of at least ``nbest``."""
    a, b = decode.max_len_a, decode.max_len_b
    if decode.beam_size == 1 and decode.nbest == 1:
        return [[hyp] for hyp in greedy_search(model, src, src_mask, a, b, need_weights)]
    beam = max(decode.beam_size, decode.nbest)
    alpha = decode.length_penalty
    return beam_search(model, src, src_mask, beam, alpha, a, b, decode.nbest, need_weights)
