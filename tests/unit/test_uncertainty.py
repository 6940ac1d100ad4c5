import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scoring import uncertainty


def test_hand_computed_values():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2]])
    ent = uncertainty(p, "entropy")
    h = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)) / np.log(3)
    np.testing.assert_allclose(ent, [0.0, 1.0, h])
    np.testing.assert_allclose(uncertainty(p, "margin"), [0.0, 1.0, 0.8])
    np.testing.assert_allclose(uncertainty(p, "least_confidence"), [0.0, 1.0, 0.75])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 3)), "empty"),
        (np.ones(3) / 3, "2-D"),
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([[1.0]]), "at least 2 classes"),
        (np.array([[1.5, -0.5]]), r"\[0, 1\]"),
    ],
)
def test_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        uncertainty(bad)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        uncertainty(np.eye(2), "bald")


@st.composite
def prob_rows(draw):
    n, k = draw(st.integers(1, 30)), draw(st.integers(2, 8))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(0.001, 1.0)))
    return raw / raw.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(prob_rows(), st.sampled_from(["entropy", "margin", "least_confidence"]))
def test_bounds_and_permutation_invariance(p, method):
    u = uncertainty(p, method)
    assert u.shape == (p.shape[0],)
    assert np.all((u >= 0) & (u <= 1))
    rng = np.random.default_rng(0)
    rows, cols = rng.permutation(p.shape[0]), rng.permutation(p.shape[1])
    np.testing.assert_allclose(uncertainty(p[rows][:, cols], method), u[rows], atol=1e-12)
