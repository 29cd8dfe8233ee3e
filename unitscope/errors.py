"""What can go wrong in answering a request, in the data's terms; app/errors.py maps each to HTTP."""

from __future__ import annotations


class Problem(Exception):
    """A request the data cannot answer; `str(problem)` says why, for the person who asked."""


class NotFound(Problem):
    """An unknown layer, unit, image, run or category, or an image file that is not there."""


class Unavailable(Problem):
    """The database cannot answer now: missing, unreadable, not a unitscope file, or out of resources."""
