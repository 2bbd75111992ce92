"""Comparisons: arrays as float64, tolerances per dtype against a float64 reference, and batch
independence."""

from __future__ import annotations

import numpy as np
from keras import ops

#: (rtol, atol) against a float64 NumPy reference (docs/guarantees.md, "Tolerances").
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


def numpy(x) -> np.ndarray:
    """Any backend's tensor (or an array) as a float64 NumPy array."""
    return np.asarray(ops.convert_to_numpy(x)).astype(np.float64)


def assert_batch_independent(batched, alone, what):
    """A sample computed inside a batch equals it computed alone: finite where alone is, and
    within 1e-6 (guarantee D3), not bit for bit. The backends' CPU kernels are not batch-size
    invariant below an ulp: where AVX2 vectorises, TensorFlow's elementwise ``exp`` of one value
    gives other bits in the vectorised body of a tensor than in its scalar tail, and batched
    matmuls and XLA pick their blocking by the shapes."""
    leaked = np.isnan(batched) & ~np.isnan(alone)
    assert not leaked.any(), f"{what} reached another sample ({leaked.sum()} values NaN)"
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6, err_msg=what)
