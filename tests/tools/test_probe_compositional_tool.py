"""tools/probe_compositional.py: the colour + shape least-squares fit, on hand-built embeddings."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("probe_compositional",
                                               Path(__file__).parents[2] / "tools" / "probe_compositional.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)

NAMES = ["red circle", "red square", "blue circle", "blue square", "green circle"]


def test_an_exactly_compositional_unseen_class_is_predicted_exactly():
    rng = np.random.default_rng(0)
    colour = {c: rng.normal(size=8) for c in ("red", "blue", "green")}
    shape = {s: rng.normal(size=8) for s in ("circle", "square")}
    text = np.stack([colour[n.split()[0]] + shape[n.split()[1]] for n in NAMES])
    got = probe.compositional_fit(text, NAMES, fit_ids=[0, 1, 2, 4], predict_ids=[3])
    assert got[3] == pytest.approx(text[3], abs=1e-9)  # blue square from red circle/square, blue and green circle


def test_a_class_that_is_not_a_composition_is_not_predicted():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(5, 64))  # unrelated embeddings: no colour or shape structure
    got = probe.compositional_fit(text, NAMES, fit_ids=[0, 1, 2, 4], predict_ids=[3])
    cos = got[3] @ text[3] / np.linalg.norm(got[3]) / np.linalg.norm(text[3])
    assert abs(cos) < 0.5


def test_a_colour_no_fitted_class_has_is_refused():
    text = np.eye(5)
    with pytest.raises(ValueError, match="'green circle': its colour or shape is in no fitted class"):
        probe.compositional_fit(text, NAMES, fit_ids=[0, 1, 2, 3], predict_ids=[4])
