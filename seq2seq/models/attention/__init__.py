"""Attention, one module per kind.

- ``rnn_scorers``: one query per step for recurrent decoders (Bahdanau additive, Luong dot
  and general);
- ``multihead``: the Transformer's multi-head attention and its decode cache;
- ``efficient``: efficient (linear) attention and its constant-size decode state.
"""
