"""Comparison helpers for the NumPy twin's tests (float64 twin against PyTorch float64)."""

import numpy as np

from unetlab.twin.bridge import max_errors, within_tolerance

MAX_REL_ERROR = 1e-9  # the twin's promise in float64: max |twin - torch| / max |torch| per tensor


def assert_twin_close(actual, expected, name: str = "") -> None:
    """The twin's tensor equals the reference: relative error <= 1e-9, and element-wise rtol=1e-7, atol=1e-9."""
    expected = np.asarray(expected)
    assert np.shape(actual) == expected.shape, f"{name}: shape {np.shape(actual)} != {expected.shape}"
    abs_err, rel_err = max_errors(actual, expected)
    # A reference that is zero up to rounding (an analytically vanishing gradient) has no relative error: then
    # both sides are rounding noise and the absolute error must be at that level (within_tolerance).
    assert within_tolerance(abs_err, rel_err, MAX_REL_ERROR), (
        f"{name}: max rel error {rel_err:.2e} (max abs error {abs_err:.2e})"
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-9, err_msg=name)
