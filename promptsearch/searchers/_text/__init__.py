"""Text-side helpers of the searchers (pure Python, no model): corpus reading and
template mining (``mining``), instruction texts (``ape``), phrase edits and
back-translation (``paraphrase``).
"""
