"""The ids every vocabulary reserves, at the bottom of the import graph.

The tokenizer trains SentencePiece with these ids, batching pads and frames with them and
the models and search read them; all import them from here, so ``data`` and ``models``
never import each other.
"""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
