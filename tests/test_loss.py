"""Label-smoothed cross-entropy: golden values, padding ignored."""

from __future__ import annotations

import math

import torch

from seq2seq.models.base import PAD_ID
from seq2seq.training.loss import label_smoothed_loss


def test_golden_value_with_label_smoothing() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0, 1.0]]])  # (1, 1, 4)
    target = torch.tensor([[3]])
    log_p = torch.log_softmax(logits[0, 0], -1)
    # Hand computation: (1 - eps) * NLL + eps * mean over classes of -log p.
    eps = 0.1
    expected = (1 - eps) * -log_p[3] + eps * -log_p.mean()
    loss = label_smoothed_loss(logits, target, smoothing=eps)
    nll = label_smoothed_loss(logits, target, smoothing=0.0)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-6)
    assert math.isclose(nll.item(), -log_p[3].item(), rel_tol=1e-6)
    # The numbers themselves, so a change of definition is noticed.
    assert math.isclose(nll.item(), 1.4938117, rel_tol=1e-6)
    assert math.isclose(loss.item(), 1.5188117, rel_tol=1e-6)


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
