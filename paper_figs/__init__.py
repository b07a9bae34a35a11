"""Paper figures: one script per figure (``fig_*.py``), each reading cached scenario results.

``gradflow figs [--fast] [--only NAME ...] [--out DIR]`` (see :mod:`paper_figs._build`) runs the
scenarios every figure needs, cached under ``paper_figs/cache/`` by the hash of their validated
configuration, then draws each figure and prints one verdict line per figure.
"""
