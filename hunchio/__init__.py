"""What ``recsys`` and ``graph`` read the same way: a data file's lines, numbers, ids and
times.

``graph`` may not import ``recsys`` (README: they meet through data), yet a follows.csv
``hunch graph cluster`` accepts must yield a users.csv ``hunch data import`` accepts, so
the rules both apply live here, once. This package imports neither of them.
"""
