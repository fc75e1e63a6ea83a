"""seq2seq-serve: a local translation server with an interactive attention page."""
