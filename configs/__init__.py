"""Hydra configs, installed as the package ``seq2seq.configs`` so installed CLIs find them."""
