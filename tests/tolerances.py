"""Tolerances per dtype for comparisons with a float64 reference (reliability.md section 2.3)."""

from __future__ import annotations

import numpy as np
from keras import ops

#: (rtol, atol) against a float64 NumPy reference (shared/reliability.md section 2.3).
TOLERANCES = {
    "float64": (1e-12, 1e-12),
    "float32": (1e-5, 1e-5),
    "float16": (1e-3, 5e-3),
    "mixed_float16": (1e-3, 5e-3),
    "bfloat16": (1.6e-2, 5e-2),
    "mixed_bfloat16": (1.6e-2, 5e-2),
}


def assert_close(actual, expected, dtype: str = "float32", scale: float = 1.0) -> None:
    """Compare with the tolerance of ``dtype`` (times ``scale``)."""
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(
        np.asarray(ops.convert_to_numpy(actual), dtype="float64"),
        np.asarray(ops.convert_to_numpy(expected), dtype="float64"),
        rtol=rtol * scale,
        atol=atol * scale,
    )
