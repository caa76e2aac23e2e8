"""The results book (c2s/sweep/book.py): docs/results.md is what its tables give, and a stale book is caught.

Sweeps are hand-made (tests/toy_sweep_tables.py: run directories collected by c2s.sweep.tables, no Ray).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from toy_sweep_tables import by_param, by_variant, make_sweep

from c2s.sweep import book as B
from c2s.sweep.spec import load_spec
from c2s.sweep.tables import TableError

REPO = Path(__file__).resolve().parents[2]
SEEDS3 = ["seeds=[0,1,2]"]
TABLE3 = {"baseline": (34.0, 4.0), "baseline + distillation": (42.0, 21.0),
          "baseline + distillation + latent embedding": (42.0, 23.0)}
# the Table 4 on the old toy world: every pairwise loss below the full model
TABLE4 = {"Cosine Similarity": (30.0, 12.0), "L2 Loss": (29.0, 10.0), "Froster": (35.0, 14.0),
          "Our distillation": (42.0, 23.0)}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    """Four finished sweeps: Table 3 (3 seeds), Table 4 (one trial failed), tau and bank size."""
    root = tmp_path_factory.mktemp("sweeps")
    make_sweep(root, "ablation_modules", by_variant(TABLE3), updates=SEEDS3)
    make_sweep(root, "ablation_distill", by_variant(TABLE4), updates=SEEDS3, failed=["t001_s2"])
    make_sweep(root, "tau", by_param("loss.tau", {0.03: (40.0, 20.0), 0.07: (42.0, 23.0), 0.2: (41.0, 18.0)}),
               updates=SEEDS3)
    make_sweep(root, "bank_size", by_param("bank.size", {8: (40.0, 20.0), 16: (42.0, 23.0), 24: (41.0, 22.0),
                                                          48: (41.0, 18.0)}))
    summary = root / "tau.log"
    summary.write_text("[sweep tau] done\n" + json.dumps({"sweep": "tau", "wall_s": 3725.0, "teacher_images": {
        "cache_builds": 4800, "trials": 0, "total": 4800}}) + "\n")
    return root


@pytest.fixture
def small(sweeps, tmp_path) -> Path:
    """docs/results/ with Table 3 and tau collected and the book built (a fresh copy per test)."""
    results = tmp_path / "docs" / "results"
    results.parent.mkdir()
    for name in ("ablation_modules", "tau"):
        B.collect(sweeps / name, results, commit="0123456789abcdef0123")
    B.build_book(results)
    return results


@pytest.fixture(scope="module")
def built(sweeps, tmp_path_factory) -> Path:
    """docs/results/ with the four sweeps collected and the book built; returns the results folder."""
    results = tmp_path_factory.mktemp("repo") / "docs" / "results"
    results.parent.mkdir()
    for name in ("ablation_modules", "ablation_distill", "bank_size"):
        B.collect(sweeps / name, results, commit="0123456789abcdef0123")
    B.collect(sweeps / "tau", results, summary=sweeps / "tau.log", commit="fedcba9876543210fedc")
    B.build_book(results)
    return results


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_the_committed_book_is_rebuilt_from_its_tables_unchanged():
    """docs/results.md and the plots' CSVs under docs/results/ are what `c2s report --book` writes from the
    committed tables (plots: by name). On failure: `c2s report --book`, then commit the page."""
    assert B.check_book(REPO / "docs" / "results") == []


def test_collect_keeps_tables_command_commit_and_wall_time(built, sweeps):
    folder = built / "tau"
    assert sorted(p.name for p in folder.iterdir()) == ["metric_vs_loss.tau.png", "per_class.parquet",
                                                        "provenance.json", "summary.csv", "sweep.json",
                                                        "trials.parquet"]
    assert pq.read_table(folder / "trials.parquet").equals(pq.read_table(sweeps / "tau" / "trials.parquet"))
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["command"] == "c2s sweep sweeps/tau.yaml --set 'seeds=[0,1,2]' --out runs/sweeps/tau"
    assert prov["commit"] == "fedcba9876543210fedc" and prov["commit_source"] == "--commit"
    assert prov["wall_s"] == 3725.0 and prov["trial_wall_s"] == 900.0  # 9 trials x 100 s
    assert prov["teacher_images"] == {"cache_builds": 4800, "trials": 0, "total": 4800}
    assert prov["started"] == "2025-03-01 09:30:00" and (prov["trials"], prov["completed"]) == (9, 9)
    words = shlex.split(prov["command"])  # the command loads as the sweep it ran
    spec = load_spec(words[2], [words[i + 1] for i, w in enumerate(words) if w == "--set"])
    assert spec.name == "tau" and spec.seeds == [0, 1, 2]


def test_collect_refuses_a_folder_without_tables(tmp_path):
    with pytest.raises(TableError, match="no trials.parquet"):
        B.collect(tmp_path, tmp_path / "results")


def test_table3_beside_the_paper_with_verdicts(built):
    text = section((built.parent / "results.md").read_text(), "Table 3: Ablations on proposed modules")
    # hIoU = 2su/(s+u) per seed, (s, u) at -1/0/+1 per seed: baseline 5.50 / 7.16 / 8.75 -> 7.1 ± 1.6
    assert "| baseline | 7.1 ± 1.6 | 11.2 | 34.0 ± 1.0 | 41.3 | 4.0 ± 1.0 | 6.4 | 3 |" in text
    assert "| baseline + distillation | 28.0 ± 1.1 | 38.8 | 42.0 ± 1.0 | 41.2 | 21.0 ± 1.0 | 36.6 | 3 |" in text
    assert ("| hIoU: baseline + distillation > baseline | \"By adding the C2S distillation, with the similar sIoU, "
            "the uIoU grows over 30% to 36.6%, resulting in a hIoU of 38.8%\" | text | 38.8 vs 11.2 | "
            "28.0 vs 7.1, Δ +20.9 (spread 2.7): **agrees** |") in text
    assert "| sIoU: baseline + distillation ≈ baseline |" in text and "Δ +8.0 (spread 2.0): **disagrees**" in text
    assert "23.0 vs 21.0, Δ +2.0 (spread 2.0): **agrees (within seed spread)**" in text
    assert "Commit `0123456789ab`" in text and "wall time 15 min (trials, summed)" in text
    assert text.count("Not run yet.") == 2  # the second toy CLIP and the paper's literal form
    assert "--set overrides.toy_clip.seed=1 --out runs/sweeps/ablation_modules_clip1" in text


def test_table4_counts_and_cross_table_claim(built):
    page = (built.parent / "results.md").read_text()
    text = section(page, "Table 4: Ablations on different distillations")
    assert "| L2 Loss (Wang et al., 2020) | 14.2 ± 0.9 | 17.8 | 28.5 ± 0.7 | 18.4 | 9.5 ± 0.7 | 17.3 | 2 |" in text
    assert "| t001_s2 | L2 Loss | 2 | failed | RuntimeError: boom |" in text  # listed, never averaged
    assert "| hIoU: L2 Loss > baseline (Table 3) |" in text and "14.2 vs 7.1, Δ +7.1" in text
    assert "| sIoU: Cosine Similarity ≈ Our distillation |" in text and "Δ -12.0 (spread 2.0): **disagrees**" in text
    pages = section(page, "Pages")
    assert "| 6 of 10 comparisons agree; causes measured for 3 of 4 disagreements |" in pages
    assert "| 5 of 6 comparisons agree; causes measured for 1 of 1 disagreements |" in pages
    assert "`ablation_calibration`: not run yet | not run yet |" in pages


def test_sensitivity_table_best_values_plot_and_csv(built):
    page = (built.parent / "results.md").read_text()
    tau = section(page, "Sensitivity: τ")
    assert "| 0.07 | 29.7 ± 1.1 | 42.0 ± 1.0 | 23.0 ± 1.0 | 3 |" in tau
    assert "- best hIoU: loss.tau = 0.07 (29.7 ± 1.1); next loss.tau = 0.03 (26.7 ± 1.1)" in tau
    assert "wall time 1 h 02 min;" in tau and "images CLIP encoded: 4,800 (cache builds 4,800" in tau
    assert "![loss.tau](results/tau/metric_vs_loss.tau.png)" in tau
    assert "it gives no value for loss.tau" in tau
    bank = section(page, "Sensitivity: bank size")
    assert "2 seed(s), 8 of 8 trial runs completed" in bank  # this spec's own seeds [0, 1]
    assert "- the paper's bank.size = 24: hIoU 28.1 ± 0.8, rank 2 of 4" in bank  # 27.54, 28.63
    csv = pd.read_csv(built / "tau" / "summary.csv")
    assert csv["cfg.loss.tau"].tolist() == [0.03, 0.07, 0.2]
    assert csv["uIoU_mean"].tolist() == [20.0, 23.0, 18.0] and csv["n_seeds"].tolist() == [3, 3, 3]
    assert (built / "tau" / "metric_vs_loss.tau.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unseen_classes_per_variant(built):
    text = section((built.parent / "results.md").read_text(), "Table 3: Ablations on proposed modules")
    assert "| red cross | 0.0 | 17.0 | 19.0 |" in text  # uIoU - 4 (the class's offset)


def test_the_check_fails_when_a_table_changes_and_passes_once_rebuilt(small):
    results = small
    assert B.check_book(results) == []
    trials = pq.read_table(results / "tau" / "trials.parquet")
    h = trials.column("final_hIoU").to_pylist()
    h[0] += 5.0
    idx = trials.schema.get_field_index("final_hIoU")
    pq.write_table(trials.set_column(idx, trials.schema.field(idx), [h]), results / "tau" / "trials.parquet")
    problems = B.check_book(results)
    assert any("results.md differs from a rebuild at line" in p for p in problems), problems
    assert any(p.endswith("tau/summary.csv differs from a rebuild") for p in problems), problems
    assert B.main(["--book", "--check", "--results", str(results)]) == 1
    assert B.main(["--book", "--results", str(results)]) == 0
    assert B.check_book(results) == []


def test_the_check_fails_for_a_new_sweep_or_a_missing_plot(small, tmp_path):
    results = small
    (results / "tau" / "metric_vs_loss.tau.png").unlink()
    assert B.check_book(results) == [f"{results}/tau/metric_vs_loss.tau.png: missing"]
    B.build_book(results)
    make_sweep(tmp_path, "ablation_calibration", by_variant({"global -, local -": (42.0, 21.0),
                                                             "global -, local ✓": (42.0, 23.0),
                                                             "global ✓, local -": (42.0, 22.0),
                                                             "global ✓, local ✓": (42.0, 24.0)}))
    B.collect(tmp_path / "ablation_calibration", results)
    problems = B.check_book(results)
    assert len(problems) == 2 and "results.md differs" in problems[0], problems
    assert problems[1].endswith("ablation_calibration/summary.csv: missing")


def test_the_book_with_no_tables_shows_the_paper_and_the_commands(tmp_path):
    (tmp_path / "docs").mkdir()
    page = B.build_book(tmp_path / "docs" / "results").read_text()
    planned = [p for s in B.SECTIONS for p in s.planned]
    assert len(planned) == 12 and page.count("Not run yet.") == 12
    assert "**agrees**" not in page and "**disagrees**" not in page and " ± " not in page.split("## Pages")[1]
    for plan in planned:
        assert B.sweep_command(plan.spec, plan.updates, plan.name) in page
    assert "| baseline | 11.2 | 41.3 | 6.4 |" in page and "| SETR-B | 44.8 | 43.8 | 45.9 | 91.0 | 109.0 | 20.8 |" in page


def test_another_folder_joins_its_specs_section_and_an_unknown_spec_goes_last(tmp_path):
    tau = by_param("loss.tau", {0.03: (40.0, 20.0), 0.07: (42.0, 23.0), 0.2: (41.0, 18.0)})
    make_sweep(tmp_path, "tau", tau, name="tau_real")
    custom = tmp_path / "custom.yaml"
    custom.write_text("name: custom\nbase: toy_c2s\nspace:\n  loss.tau: {grid: [0.03, 0.07, 0.2]}\nseeds: [0]\n")
    make_sweep(tmp_path, str(custom), tau)
    (tmp_path / "docs").mkdir()
    for name in ("tau_real", "custom"):
        B.collect(tmp_path / name, tmp_path / "docs" / "results", commit="abc")
    page = B.build_book(tmp_path / "docs" / "results").read_text()
    assert "### `tau_real`" in section(page, "Sensitivity: τ")  # spec `tau`, another folder
    other = section(page, "Other sweeps")
    assert "### `custom`" in other and "| 0.07 | 28.6 | 41.0 | 22.0 | 1 |" in other  # seed 0: (41, 22)
    assert "c2s sweep " + str(custom) + " --out runs/sweeps/custom" in other


def test_each_addition_is_compared_with_the_literal_full_row_of_another_sweep(tmp_path):
    """sweeps/additions.yaml's variants against `ablation_modules_literal`'s full C2S row ("@folder:variant")."""
    literal = {**TABLE3, B.FULL_C2S: (20.0, 20.0)}  # hIoU 19 / 20 / 21 over the seeds: 20.0 ± 1.0
    make_sweep(tmp_path, "ablation_modules", by_variant(literal), updates=SEEDS3 + list(B.LITERAL),
               name="ablation_modules_literal")
    # hIoU per seed, by hand: h(29, 23) = 25.65, h(30, 24) = 26.67, h(31, 25) = 27.68 -> 26.7
    make_sweep(tmp_path, "additions", by_variant({"+ learned logit bias": (30.0, 24.0),
                                                  "+ cosine global pooling": (21.0, 20.0),  # 20.49
                                                  "+ local false negatives": (18.0, 19.0)}),  # 18.49
               updates=SEEDS3)
    results = tmp_path / "docs" / "results"
    results.parent.mkdir()
    for name in ("ablation_modules_literal", "additions"):
        B.collect(tmp_path / name, results, commit="abc")
    page = B.build_book(results).read_text()
    text = section(page, "c2s's additions, one at a time")
    full = "baseline + distillation + latent embedding (`ablation_modules_literal`)"
    assert f"| hIoU: + learned logit bias > {full} |" in text
    assert "26.7 vs 20.0, Δ +6.7 (spread 2.0): **agrees** |" in text
    assert "20.5 vs 20.0, Δ +0.5 (spread 2.0): **agrees (within seed spread)** |" in text
    assert "18.5 vs 20.0, Δ -1.5 (spread 2.0): **disagrees (within seed spread)** |" in text
    # no entry of c2s/sweep/causes.py explains a disagreement of these made-up numbers: marked and counted
    claim = f"hIoU: + local false negatives > {full}"
    assert f"- {claim} (`additions`): **cause not measured yet**." in text
    assert "| 2 of 3 comparisons agree; causes measured for 0 of 1 disagreements |" in section(page, "Pages")


def test_a_disagreement_shows_its_measured_cause_and_a_cause_must_name_its_sweep(tmp_path, monkeypatch):
    from c2s.sweep import causes

    worse = {**TABLE3, B.FULL_C2S: (42.0, 19.0)}  # the latent embedding loses uIoU and hIoU: a disagreement
    make_sweep(tmp_path, "ablation_modules", by_variant(worse), updates=SEEDS3)
    results = tmp_path / "docs" / "results"
    results.parent.mkdir()
    B.collect(tmp_path / "ablation_modules", results, commit="abc")
    claim = "hIoU: baseline + distillation + latent embedding > baseline + distillation"
    page = B.build_book(results).read_text()
    text = section(page, "Table 3: Ablations on proposed modules")
    committed = causes.cause_of(claim, "ablation_modules")
    assert committed is not None
    assert f"- {claim} (`ablation_modules`): {committed.why} ([table3-toy.md]({committed.where}))." in text
    # the uIoU side agrees in the committed ablation_modules, so no cause names that sweep for it
    assert f"- {claim.replace('hIoU', 'uIoU')} (`ablation_modules`): **cause not measured yet**." in text
    assert "| 3 of 6 comparisons agree; causes measured for 2 of 3 disagreements |" in section(page, "Pages")
    # the same claim in a sweep no cause names is not explained by another sweep's cause
    assert causes.cause_of(claim, "another_sweep") is None
    monkeypatch.setattr(causes, "CAUSES", causes.CAUSES + (causes.Cause(claim, ("ablation_modules",), "x", "y"),))
    with pytest.raises(ValueError, match="2 causes for"):
        causes.cause_of(claim, "ablation_modules")


def test_every_cause_explains_a_disagreement_of_the_committed_book_and_every_disagreement_has_one():
    """c2s/sweep/causes.py against docs/results/: no stale entry, no unexplained disagreement."""
    from c2s.sweep import causes

    collected = B.load_collected(Path("docs/results"))
    others = B.cross_sweep_stats(collected)
    disagree = []
    for s in B.SECTIONS:
        have = [c for _, _, c in B.section_sweeps(s, collected) if c is not None]
        disagree += B.claims_block(s, have, others)[1].disagree
    assert len(disagree) == 16  # the page list of docs/results.md: 11 + 3 + 1 + 1
    assert [d for d in disagree if causes.cause_of(*d) is None] == []
    used = {(c.claim, sweep) for c in causes.CAUSES for sweep in c.sweeps}
    assert used == set(disagree), "causes.py names a (claim, sweep) that no longer disagrees, or misses one"


def test_cli_arguments():
    assert B.parse_args(["--book"]).book and B.parse_args(["--collect", "runs/sweeps/tau"]).collect
    for argv in (["--book", "runs/sweeps/tau"], [], ["runs/x", "--check"], ["--book", "--collect"]):
        with pytest.raises(SystemExit):
            B.parse_args(argv)


def test_a_plain_report_still_goes_to_report_main(sweeps, tmp_path, capsys):
    from c2s.cli import main

    assert main(["report", str(sweeps / "ablation_modules"), "--out", str(tmp_path / "r")]) == 0
    assert "| baseline | 7.1 ± 1.6 | 34.0 ± 1.0 | 4.0 ± 1.0 | 3 |" in (tmp_path / "r" / "ablation.md").read_text()
    assert main(["report", "--collect", str(tmp_path / "nothing")]) == 2
    assert "no trials.parquet" in capsys.readouterr().err
