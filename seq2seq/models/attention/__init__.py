"""Attention, one module per kind.

- ``rnn_scorers``: one query per step for recurrent decoders (Bahdanau additive, Luong dot
  and general);
- ``multihead``: the Transformer's multi-head attention and its decode cache;
- ``functional``: attention over split heads as pure functions: ``scaled_dot_product`` written
  out, and ``attend``, the one place that picks the fused kernel, the written-out formula
  (with weights) or efficient attention;
- ``efficient``: efficient (linear) attention and its constant-size decode state.
"""
