"""Label-smoothed cross-entropy: golden values, padding ignored."""

from __future__ import annotations

import math

import torch

from seq2seq.special_tokens import BOS_ID, PAD_ID
from seq2seq.training.loss import label_smoothed_loss, perplexity


def test_golden_value_with_label_smoothing() -> None:
    """Two real tokens and a pad, V = 6; the smoothing mass avoids PAD (0) and BOS (2).

    Token 1: logits (3, 0, 2, 2, 0, 1), target 3. log Z = log(e^3 + 2 + 2e^2 + e) = 3.6783727,
    NLL = log Z - 2 = 1.6783727; over the predictable classes 1, 3, 4, 5 the mean of -log p is
    log Z - (0 + 2 + 0 + 1) / 4 = 2.9283727, so the smoothed loss is 0.9 NLL + 0.1 * 2.9283727
    = 1.8033727. (torch's ε/V over all six classes would give log Z - 8/6 in the second term.)
    Token 2: logits (0, 1, 0, -1, 2, 0.5), target 4. log Z = 2.6478711, NLL = 0.6478711, the
    predictable mean is log Z - (1 - 1 + 2 + 0.5) / 4 = 2.0228711, loss = 0.7853711.
    """
    logits = torch.tensor(
        [[[3.0, 0.0, 2.0, 2.0, 0.0, 1.0], [0.0, 1.0, 0.0, -1.0, 2.0, 0.5], [9.0, 0, 0, 0, 0, 0]]]
    )  # (1, 3, 6)
    target = torch.tensor([[3, 4, PAD_ID]])
    loss = label_smoothed_loss(logits, target, smoothing=0.1)
    nll = label_smoothed_loss(logits, target, smoothing=0.0)
    assert math.isclose(loss.item(), 1.8033727 + 0.7853711, rel_tol=1e-6)
    assert math.isclose(nll.item(), 1.6783727 + 0.6478711, rel_tol=1e-6)
    # validation's perplexity: exp of the mean NLL over the two real tokens
    assert math.isclose(perplexity(nll.item() / 2), 3.1999076, rel_tol=1e-6)


def test_smoothing_puts_no_mass_on_pad_or_bos() -> None:
    """The loss is the cross-entropy with q = (1-ε)·onehot + ε/(V-2) off PAD and BOS."""
    torch.manual_seed(0)
    vocab, eps = 7, 0.2
    logits = torch.randn(1, 4, vocab)
    target = torch.tensor([[3, 5, 1, 6]])
    q = torch.full((4, vocab), eps / (vocab - 2))
    q[:, [PAD_ID, BOS_ID]] = 0.0
    q[torch.arange(4), target[0]] += 1 - eps
    assert torch.allclose(q.sum(-1), torch.ones(4))
    expected = -(q * torch.log_softmax(logits[0], -1)).sum()
    torch.testing.assert_close(label_smoothed_loss(logits, target, eps), expected)
    # raising the PAD and BOS logits only ever costs: their probability is never a target
    shifted = logits.clone()
    shifted[..., [PAD_ID, BOS_ID]] += 5.0
    assert label_smoothed_loss(shifted, target, eps) > label_smoothed_loss(logits, target, eps)


def test_padding_positions_do_not_count() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    target = torch.randint(4, 7, (2, 5))
    target[1, 3:] = PAD_ID
    loss = label_smoothed_loss(logits, target, smoothing=0.1)
    changed = logits.clone()
    changed[1, 3:] = torch.randn(2, 7) * 10  # anything at padded positions
    loss_changed = label_smoothed_loss(changed, target, smoothing=0.1)
    assert torch.equal(loss, loss_changed)
    real = target != PAD_ID
    per_token = torch.stack(
        [
            label_smoothed_loss(logits[b, t].view(1, 1, -1), target[b, t].view(1, 1), 0.1)
            for b, t in real.nonzero().tolist()
        ]
    )
    assert torch.allclose(loss, per_token.sum(), atol=1e-5)
