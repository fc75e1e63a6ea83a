#!/usr/bin/env bash
# Create .venv with a CPU build of PyTorch and seq2seq (editable) with its dev tools and the
# server and export extras (seq2seq-serve, seq2seq-export; their tests need them).
# torch is pinned first: an unpinned install would pull a multi-GB CUDA build.
# For a CUDA machine, install the torch wheel you need first, then run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,serve,export]"
