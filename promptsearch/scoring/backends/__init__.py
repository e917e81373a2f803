"""The scoring back-ends, one per model kind (causal, masked, seq2seq), the shared
pieces they all use (:mod:`~promptsearch.scoring.backends.base`), and the causal
back-end's shared-prefix cache.
"""
