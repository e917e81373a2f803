"""Schema revisions, one module each, named ``NNNN_description.py`` (revision ``NNNN``)."""
