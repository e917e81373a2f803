"""Scoring prompts with a language model: the :class:`~promptsearch.scoring.scorer.Scorer`,
contextual calibration, length-bucketed batching, guards against non-finite output,
and the model-kind back-ends under :mod:`promptsearch.scoring.backends`.
"""
