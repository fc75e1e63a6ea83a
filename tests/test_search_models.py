"""Greedy and beam search on the real model families, each trained briefly on the toy corpus."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor

from seq2seq.decoding import Hypothesis, beam_search, greedy_search
from seq2seq.inference import Translator, pad_batch
from seq2seq.special_tokens import BOS_ID, EOS_ID
from seq2seq.training.trainer import train
from tests.conftest import compose_config, tiny_overrides

MAX_LEN_A, MAX_LEN_B = 1.5, 4
SENTENCES = 40
STEPS = "train.max_steps=150"
CPU = torch.device("cpu")


def load_bench() -> ModuleType:
    """scripts/bench_decode.py, whose cache-free greedy decoder is the naive reference here."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_decode.py"
    spec = importlib.util.spec_from_file_location("bench_decode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["rnn", "transformer"])
def trained(
    request: pytest.FixtureRequest, synthetic_dir: Path, tmp_path_factory
) -> tuple[Translator, Tensor, Tensor]:
    """A briefly trained model of one family and a padded batch of test sources."""
    work = tmp_path_factory.mktemp(f"search_{request.param}")
    overrides = [
        o
        for o in tiny_overrides(synthetic_dir, work, request.param)
        if not o.startswith("train.max_steps")
    ]
    cfg = compose_config("train", [*overrides, STEPS, "train.valid_every=150"])
    train(cfg, work / "run")
    translator = Translator.from_checkpoint(work / "run", CPU)
    lines = (synthetic_dir / "test.src").read_text(encoding="utf-8").splitlines()[:SENTENCES]
    # Half the sources with their words shuffled: inputs the model is unsure about give beam
    # search better paths than greedy's to find.
    rng = random.Random(0)
    for line in lines[: SENTENCES // 2]:
        words = line.split()
        rng.shuffle(words)
        lines.append(" ".join(words))
    src, src_mask = pad_batch(translator.tokenizer.encode_src(lines), CPU)
    return translator, src, src_mask


def lp(length: int, alpha: float) -> float:
    """GNMT length penalty, as the search ranks finished hypotheses."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.inference_mode()
def model_score(translator: Translator, src: Tensor, src_mask: Tensor, tokens: list[int]) -> float:
    """log P(tokens + EOS | src) under teacher forcing: the model's own score of a hypothesis."""
    length = int(src_mask.sum())
    tgt = torch.tensor([[BOS_ID, *tokens, EOS_ID]])  # (1, T + 2)
    logits, _ = translator.model(src[None, :length], src_mask[None, :length], tgt[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1)[0]  # (T + 1, V)
    return float(logp.gather(1, tgt[0, 1:, None]).sum())


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_one_follows_greedy_and_keeps_the_better_ending(trained, alpha: float) -> None:
    """Width 1 keeps one live beam, greedy's path, and sets aside every EOS among the top 2
    on the way: it returns greedy's hypothesis, or one that ends earlier or later on that
    path and scores better once normalised."""
    translator, src, src_mask = trained
    greedy = greedy_search(translator.model, src, src_mask, MAX_LEN_A, MAX_LEN_B, need_weights=True)
    beam = beam_search(
        translator.model, src, src_mask, 1, alpha, MAX_LEN_A, MAX_LEN_B, need_weights=True
    )
    same = 0
    for g, [b] in zip(greedy, beam, strict=True):
        assert (
            b.score / lp(len(b.tokens) + 1, alpha) >= g.score / lp(len(g.tokens) + 1, alpha) - 1e-4
        )
        if b.tokens == g.tokens:
            same += 1
            assert b.score == pytest.approx(g.score, abs=1e-4)
            torch.testing.assert_close(b.attention, g.attention)
        else:
            shorter, longer = sorted([b.tokens, g.tokens], key=len)
            assert longer[: len(shorter)] == shorter  # one path, ended at another step
    assert same > len(greedy) // 2


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_never_scores_below_greedy_under_the_model(trained, alpha: float) -> None:
    translator, src, src_mask = trained
    greedy = greedy_search(translator.model, src, src_mask, MAX_LEN_A, MAX_LEN_B)
    beam = beam_search(translator.model, src, src_mask, 5, alpha, MAX_LEN_A, MAX_LEN_B)
    improved = 0
    for i, (g, [b]) in enumerate(zip(greedy, beam, strict=True)):
        g_score = model_score(translator, src[i], src_mask[i], g.tokens)
        b_score = model_score(translator, src[i], src_mask[i], b.tokens)
        # the search's running scores are the model's own log-probabilities
        assert g.score == pytest.approx(g_score, abs=1e-3)
        assert b.score == pytest.approx(b_score, abs=1e-3)
        g_norm = g_score / lp(len(g.tokens) + 1, alpha)
        b_norm = b_score / lp(len(b.tokens) + 1, alpha)
        assert b_norm >= g_norm - 1e-4, f"sentence {i}: beam {b.tokens} below greedy {g.tokens}"
        improved += b_norm > g_norm + 1e-4
    # not vacuous: on the shuffled sources beam search finds better paths than greedy's
    assert improved > 0


def test_batched_beam_equals_each_sentence_alone(trained) -> None:
    translator, src, src_mask = trained
    count = 12
    batched = beam_search(
        translator.model, src[:count], src_mask[:count], 4, 0.6, MAX_LEN_A, MAX_LEN_B, nbest=3
    )
    for i, hyps in enumerate(batched):
        length = int(src_mask[i].sum())  # alone, with no padding at all
        alone = beam_search(
            translator.model,
            src[i : i + 1, :length],
            src_mask[i : i + 1, :length],
            4,
            0.6,
            MAX_LEN_A,
            MAX_LEN_B,
            nbest=3,
        )[0]
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-4)


def test_transformer_cache_gives_the_greedy_output_of_rerunning_the_prefix(trained) -> None:
    translator, src, src_mask = trained
    if translator.checkpoint["model_config"]["family"] != "transformer":
        pytest.skip("only the Transformer has a key/value cache")
    bench = load_bench()
    cached = greedy_search(translator.model, src, src_mask, MAX_LEN_A, MAX_LEN_B)
    naive: list[Hypothesis] = bench.greedy_without_cache(
        translator.model, src, src_mask, MAX_LEN_A, MAX_LEN_B
    )
    assert [h.tokens for h in cached] == [h.tokens for h in naive]
    assert [h.score for h in cached] == pytest.approx([h.score for h in naive], abs=1e-4)
    assert any(h.tokens for h in cached)
