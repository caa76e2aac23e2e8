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


def _orthonormal_world(names: list[str]) -> np.ndarray:
    """text("c s") = (e_c + e_s) / sqrt(2) with one orthonormal axis per colour and per shape."""
    axes = {a: i for i, a in enumerate(("red", "blue", "green", "circle", "square"))}
    text = np.zeros((len(names), 8))
    for row, name in enumerate(names):
        for word in name.split():
            text[row, axes[word]] = 1.0 / np.sqrt(2.0)
    return text


def test_the_analogy_margin_of_an_additive_class_is_one_minus_its_nearest_sibling():
    text = _orthonormal_world(NAMES)
    # one trio spells blue square: blue circle + red square - red circle = its text exactly (cos 1); its
    # nearest others, blue circle and red square, share one axis of two (cos 0.5); green square is no class
    assert probe.analogy_margin(text, NAMES, [0, 1, 2, 4], 3) == pytest.approx(0.5, abs=1e-12)


def test_the_analogy_margin_is_negative_when_the_unseen_text_is_off_the_composition():
    text = _orthonormal_world(NAMES)
    text[3] = np.eye(8)[7]  # blue square on an axis of its own: the analogy (blue + square) misses it
    assert probe.analogy_margin(text, NAMES, [0, 1, 2, 4], 3) == pytest.approx(-0.5, abs=1e-12)


def test_background_competes_with_the_unseen_class():
    names = NAMES + ["background"]
    text = np.vstack([_orthonormal_world(NAMES), _orthonormal_world(["blue square"])])  # background = blue square
    assert probe.analogy_margin(text, names, [0, 1, 2, 4, 5], 3) == pytest.approx(0.0, abs=1e-12)


def test_a_class_no_seen_trio_spells_is_refused():
    text = _orthonormal_world(NAMES)
    with pytest.raises(ValueError, match="'blue square': no seen trio spells it by analogy"):
        probe.analogy_margin(text, NAMES, [0, 2, 4], 3)  # without red square
