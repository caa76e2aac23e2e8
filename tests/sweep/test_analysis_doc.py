"""docs/analysis.md runs: its Python blocks in order (one namespace, like a notebook) and each SQL block with
DuckDB, on small hand-made tables under docs/results/; every SQL answer equals the pandas `answer` before it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from toy_sweep_tables import by_param, by_variant, make_sweep

from c2s.sweep.book import collect

duckdb = pytest.importorskip("duckdb", reason="duckdb is in the dev extra (pip install -e '.[dev]')")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
DIST, FULL = "baseline + distillation", "baseline + distillation + latent embedding"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A folder with docs/results/{tau, bank_size, ablation_modules}/, as `c2s report --collect` keeps them."""
    root = tmp_path_factory.mktemp("analysis")
    seeds = ["seeds=[0,1,2]"]
    make_sweep(root, "tau", by_param("loss.tau", {0.03: (40.0, 20.0), 0.07: (42.0, 23.0), 0.2: (44.0, 18.0)}),
               updates=seeds)
    make_sweep(root, "bank_size", by_param("bank.size", {8: (40.0, 20.0), 16: (42.0, 23.0), 24: (41.0, 22.0),
                                                          48: (41.0, 18.0)}), updates=seeds, failed=["t002_s2"])
    table3 = {"baseline": (34.0, 4.0), DIST: (42.0, 21.0), FULL: (42.0, 23.0)}
    # the latent embedding: +2 uIoU on average, red cross +7, green triangle -1 (zero-sum shifts)
    make_sweep(root, "ablation_modules", by_variant(table3), updates=seeds,
               shift=lambda t: (5.0, -3.0, 0.0, 0.0, -2.0) if t.variant == FULL else ())
    results = root / "docs" / "results"
    results.parent.mkdir()
    for name in ("tau", "bank_size", "ablation_modules"):
        collect(root / name, results, commit="0" * 40)
    return root


@pytest.fixture(scope="module")
def answers(repo) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(pandas answer, DuckDB answer) per SQL block of docs/analysis.md, run from ``repo``."""
    namespace: dict = {}
    pairs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        for language, code in blocks(PAGE.read_text()):
            if language == "python":
                exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own code
            elif language == "sql":
                assert "answer" in namespace, f"SQL block without a pandas answer before it:\n{code}"
                pairs.append((namespace.pop("answer"), duckdb.sql(code).df()))
    return pairs


def test_the_page_has_six_questions_answered_twice():
    langs = [lang for lang, _ in blocks(PAGE.read_text())]
    assert langs.count("sql") == 6 and langs.count("python") == 7


def test_pandas_and_duckdb_agree(answers):
    assert len(answers) == 6
    for i, (ours, theirs) in enumerate(answers):
        assert list(ours.columns) == list(theirs.columns), i
        pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True),
                                      check_dtype=False, check_exact=False, atol=1e-9, obj=f"answer {i}")


def test_best_tau_per_metric(answers):
    best = answers[0][0].set_index("metric")
    # hIoU = 2su/(s+u): 0.07 -> 29.7 beats 0.2's (44, 18) -> 25.5; sIoU is best at 0.2
    assert best.loc["hIoU", "tau"] == 0.07 and best.loc["sIoU", "tau"] == 0.2 and best.loc["uIoU", "tau"] == 0.07
    assert best.loc["uIoU", "mean"] == 23.0 and best.loc["uIoU", "std"] == pytest.approx(1.0)
    assert (best.loc["uIoU", "lo"], best.loc["uIoU", "hi"], best.loc["uIoU", "seeds"]) == (22.0, 24.0, 3)


def test_unseen_iou_against_bank_size(answers):
    table = answers[1][0]
    assert table["bank_size"].tolist() == [8, 16, 24, 48]
    assert table["unseen_iou"].tolist() == pytest.approx([20.0, 23.0, 21.5, 18.0])  # 24: seed 2 failed, (21 + 22) / 2
    assert table["seeds"].tolist() == [3, 3, 2, 3]
    per_class = answers[2][0]
    assert len(per_class) == 5 * 4
    row = per_class[(per_class["class"] == "red cross") & (per_class["bank_size"] == 16)]
    assert row["iou"].item() == pytest.approx(19.0)  # uIoU 23 - 4 (the class's offset)


def test_winners_and_losers(answers):
    table = answers[3][0]
    assert len(table) == 21 and table.iloc[0]["class"] == "red cross" and table.iloc[0]["delta"] == pytest.approx(7.0)
    assert table.iloc[-1]["class"] == "green triangle" and table.iloc[-1]["delta"] == pytest.approx(-1.0)
    assert table.iloc[1]["delta"] == pytest.approx(2.0) and not table.iloc[0]["seen"]


def test_paired_seeds_and_costs(answers):
    paired = answers[4][0]
    assert paired["seed"].tolist() == [0, 1, 2] and (paired["delta_hIoU"] > 0).all()
    cost = answers[5][0].set_index("folder")
    assert cost.loc["bank_size", "trials"] == 12 and cost.loc["bank_size", "completed"] == 11
    assert cost.loc["tau", "wall_h"] == pytest.approx(9 * 100 / 3600)
