"""Corpus metrics with sacrebleu, each reported with its signature."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sacrebleu


@dataclass
class Score:
    """One corpus-level metric and the sacrebleu signature that makes it reproducible."""

    name: str
    score: float
    signature: str


def corpus_scores(
    hypotheses: list[str], references: list[str], ter: bool = True
) -> dict[str, Score]:
    """BLEU, chrF and (optionally) TER of detokenized hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metrics = {"bleu": sacrebleu.metrics.BLEU(), "chrf": sacrebleu.metrics.CHRF()}
    if ter:
        metrics["ter"] = sacrebleu.metrics.TER()
    scores = {}
    for name, metric in metrics.items():
        result = metric.corpus_score(hypotheses, [references])
        scores[name] = Score(name, round(result.score, 2), str(metric.get_signature()))
    return scores


def scores_to_dict(scores: dict[str, Score]) -> dict[str, dict[str, float | str]]:
    """JSON-ready form: ``{"bleu": {"name": ..., "score": ..., "signature": ...}, ...}``."""
    return {name: asdict(score) for name, score in scores.items()}
