"""Seeded random orthonormal bases of a layer's channel space: the random-basis control (Bau et al. 2017).

A direction of basis b is a row of rotation(units, seed); its response to an image is the pre-ReLU map
rotated, sum over channels c of Q[d, c] * map_c, reduced to mean, max and min as a unit's is
(worker.extract). numpy only, so the rotation a run used can be rebuilt from its seed anywhere.
"""

from __future__ import annotations

import numpy as np


def rotation(units: int, seed: int) -> np.ndarray:
    """A (units, units) float64 orthogonal matrix drawn uniformly (Haar measure) with this seed.

    The QR decomposition of a standard normal matrix, with the signs of R's diagonal moved into Q so that
    the draw is uniform rather than biased by the factorisation's sign convention (Mezzadri 2007).
    """
    if units < 1:
        raise ValueError(f"a basis needs at least one unit, got {units}")
    gaussian = np.random.default_rng(seed).standard_normal((units, units))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))
