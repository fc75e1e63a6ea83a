"""Word alignments from two models, one per direction, merged: AER of each and of the merge.

A source→target model force-decodes the gold target; a target→source model force-decodes
the gold source. Each direction's links come from its own best layer (lowest AER on the
gold set); the reverse links ``(j, i)`` are flipped and merged with the forward ones by
intersection, union and grow-diag-final-and (:func:`seq2seq.alignment.symmetrize`), as
statistical aligners' outputs are.
"""

from __future__ import annotations

import torch

from seq2seq.alignment import SYMMETRIZATIONS, Link, aer, best_layer_by_aer, symmetrize
from seq2seq.alignment_eval import GoldSet, forced_pairs, pair_links, scorable
from seq2seq.errors import UserError
from seq2seq.inference import Translator
from seq2seq.readout import READINGS, Readout


def check_directions(forward: Translator, reverse: Translator) -> None:
    """Refuse a reverse model whose languages are not this model's, swapped."""
    fwd, rev = (t.checkpoint.get("config", {}).get("data", {}) for t in (forward, reverse))
    pair, back = (fwd.get("src"), fwd.get("tgt")), (rev.get("tgt"), rev.get("src"))
    if None not in pair and None not in back and pair != back:
        raise UserError(
            f"reverse_checkpoint translates {rev['src']}→{rev['tgt']}, but the checkpoint "
            f"translates {fwd['src']}→{fwd['tgt']}: give a {fwd['tgt']}→{fwd['src']} model."
        )


def symmetrized_scores(
    forward: Translator, reverse: Translator, gold: GoldSet, device: torch.device
) -> dict[str, dict[str, float]]:
    """AER, precision, recall, F1 of ``forward``, ``reverse`` and each merge, on ``gold``.

    Scored on the sentences both models' tokenizers split into their gold words; each
    direction is read at the reading and layer with its lowest AER.
    """
    check_directions(forward, reverse)
    keep = [
        k
        for k, (src, tgt) in enumerate(zip(gold.src, gold.tgt, strict=True))
        if scorable(forward.tokenizer, src, tgt) and scorable(reverse.tokenizer, tgt, src)
    ]
    srcs, tgts = [gold.src[k] for k in keep], [gold.tgt[k] for k in keep]
    sure, possible = [gold.sure[k] for k in keep], [gold.possible[k] for k in keep]
    fwd_layers = _readings_links(forward, srcs, tgts, device)
    rev_layers = [  # (j, i) of the reverse model, flipped to (i, j) for scoring
        [{(i, j) for j, i in links} for links in layer]
        for layer in _readings_links(reverse, tgts, srcs, device)
    ]
    fwd = fwd_layers[best_layer_by_aer(fwd_layers, sure, possible)]
    rev = rev_layers[best_layer_by_aer(rev_layers, sure, possible)]
    merged: dict[str, list[set[Link]]] = {
        mode: [symmetrize(f, {(j, i) for i, j in r}, mode) for f, r in zip(fwd, rev, strict=True)]
        for mode in SYMMETRIZATIONS
    }
    results = {"forward": aer(fwd, sure, possible), "reverse": aer(rev, sure, possible)}
    results.update({mode: aer(links, sure, possible) for mode, links in merged.items()})
    results["sentences"] = {"scored": len(keep), "skipped": len(gold) - len(keep)}
    return results


def _readings_links(
    translator: Translator, srcs: list[str], tgts: list[str], device: torch.device
) -> list[list[set[Link]]]:
    """Links ``[reading x layer][pair]`` of every reading and layer (heads averaged), the
    targets force-decoded once."""
    pairs = forced_pairs(translator.model, translator.tokenizer, srcs, tgts, device)
    layers = pairs[0][0].shape[0] if pairs else 1
    return [
        pair_links(pairs, Readout(reading, layer))
        for reading in READINGS
        for layer in range(layers)
    ]
