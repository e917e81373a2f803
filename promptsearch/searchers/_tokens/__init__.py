"""Token-level helpers of the searchers that read a model's vocabulary: trigger
templates and the gradient-guided trigger search (``autoprompt``), answer-slot
log-probabilities over the vocabulary and label-word choice (``label-words``), and the
prompt policy of ``rl``.
"""
