"""What can go wrong in answering a request, in the data's terms (app/errors.py maps each Problem to HTTP), and
the Python API's own: a closed handle, the pages' overlap warning."""

from __future__ import annotations


class Problem(Exception):
    """A request the data cannot answer; `str(problem)` says why, for the person who asked."""


class NotFound(Problem):
    """An unknown layer, unit, image, run or category, or an image file that is not there."""


class Unavailable(Problem):
    """The database cannot answer now: missing, unreadable, not a unitscope file, or out of resources."""


class Closed(RuntimeError):
    """A Python API handle used after Database.close()."""


class OverlapWarning(UserWarning):
    """A unit's top k and bottom k must share images (2k > images): the pages' warning, from the Python API."""
