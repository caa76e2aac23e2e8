"""`c2s report` on small hand-made trials tables: the pivots' mean ± std numbers and the files written."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from c2s.sweep import report as R
from c2s.sweep.tables import load_tables, upsert


def row(point: int, seed: int, h: float, s: float, u: float, status: str = "completed", variant=None,
        label=None, **cfg) -> dict:
    return {"sweep": "test", "trial_id": f"t{point:03d}_s{seed}", "point_id": f"t{point:03d}",
            "label": label or variant or f"p{point}", "variant": variant, "seed": seed, "status": status,
            "error": "RuntimeError: boom" if status == "failed" else None, "final_hIoU": h, "final_sIoU": s,
            "final_uIoU": u, "best_hIoU": h + 1, "best_sIoU": s, "best_uIoU": u + 1, "final_step": 300,
            "best_step": 150, **{f"cfg.{k}": v for k, v in cfg.items()}}


def ablation_rows() -> list[dict]:
    off = {"distill.enabled": False, "latent.enabled": False}
    dist = {"distill.enabled": True, "latent.enabled": False}
    full = {"distill.enabled": True, "latent.enabled": True}
    return [
        row(0, 0, 10.0, 40.0, 6.0, variant="baseline", **off),
        row(0, 1, 12.0, 42.0, 8.0, variant="baseline", **off),
        row(0, 2, 99.0, 99.0, 99.0, status="failed", variant="baseline", **off),  # never averaged
        row(1, 0, 38.0, 41.0, 36.0, variant="baseline + distillation", **dist),
        row(1, 1, 39.0, 41.0, 37.0, variant="baseline + distillation", **dist),
        row(2, 0, 42.0, 42.0, 42.0, variant="baseline + distillation + latent embedding", **full),
        row(2, 1, 43.0, 41.0, 45.0, variant="baseline + distillation + latent embedding", **full),
    ]


def curves_rows() -> list[dict]:
    out = []
    for tid, seed in (("t000_s0", 0), ("t000_s1", 1), ("t002_s0", 0)):
        for step in (10, 20, 30):
            out.append({"sweep": "test", "trial_id": tid, "seed": seed, "step": step, "kind": "train",
                        "loss": 3.0 / step, "loss_global": 1.0 / step, "loss_local": 0.5 / step})
        out.append({"sweep": "test", "trial_id": tid, "seed": seed, "step": 30, "kind": "eval", "hIoU": 40.0})
    return out


def test_ablation_pivot_mean_std(tmp_path: Path):
    upsert(tmp_path, "trials", ablation_rows())
    trials = load_tables(tmp_path)["trials"]
    table = R.ablation_table(trials)
    assert table["variant"].tolist() == ["baseline", "baseline + distillation",
                                         "baseline + distillation + latent embedding"]
    assert table["hIoU_mean"].tolist() == [11.0, 38.5, 42.5]
    assert table["hIoU_std"].tolist() == pytest.approx([math.sqrt(2), math.sqrt(0.5), math.sqrt(0.5)])
    assert table["uIoU_mean"].tolist() == [7.0, 36.5, 43.5]
    assert table["n_seeds"].tolist() == [2, 2, 2]  # the failed seed is not counted
    pretty = R.format_pm(table)
    assert pretty.columns.tolist() == ["variant", "hIoU", "sIoU", "uIoU", "n_seeds"]
    assert pretty.iloc[0].tolist() == ["baseline", "11.0 ± 1.4", "41.0 ± 1.4", "7.0 ± 1.4", 2]
    assert pretty.iloc[2]["uIoU"] == "43.5 ± 2.1"
    best = R.ablation_table(trials, which="best")
    assert best["hIoU_mean"].tolist() == [12.0, 39.5, 43.5]
    failed = R.failed_table(trials)
    assert failed[["trial_id", "status"]].values.tolist() == [["t000_s2", "failed"]]


def test_sensitivity_and_backbone_tables():
    trials = pd.DataFrame([
        row(1, 0, 40.0, 41.0, 39.0, **{"loss.tau": 0.07}),
        row(1, 1, 44.0, 45.0, 43.0, **{"loss.tau": 0.07}),
        row(0, 0, 30.0, 40.0, 24.0, **{"loss.tau": 0.03}),
        row(0, 1, 32.0, 40.0, 26.0, **{"loss.tau": 0.03}),
        row(2, 0, 35.0, 40.0, 31.0, **{"loss.tau": 0.2}),
        row(2, 1, 0.0, 0.0, 0.0, status="running", **{"loss.tau": 0.2}),
    ])
    assert R.swept_columns(trials) == ["cfg.loss.tau"]
    sens = R.sensitivity_table(trials)
    assert sens["cfg.loss.tau"].tolist() == [0.03, 0.07, 0.2]  # sorted by value
    assert sens["hIoU_mean"].tolist() == [31.0, 42.0, 35.0]
    pretty = R.format_pm(sens)
    assert pretty["hIoU"].tolist() == ["31.0 ± 1.4", "42.0 ± 2.8", "35.0"]  # one seed: mean alone
    assert R.ablation_table(trials) is None and R.backbone_table(trials) is None
    assert R.format_pm(sens.assign(**{c: sens[c] / 100 for c in sens if c.endswith(("_mean", "_std"))}))[
        "hIoU"].tolist()[0] == "0.310 ± 0.014"  # fractions get 3 decimals

    bb = pd.DataFrame([
        row(0, 0, 40.0, 41.0, 39.0, **{"model.name": "segformer_tiny"}) | {"params_m": 3.7, "gflops": 1.5},
        row(0, 1, 42.0, 41.0, 43.0, **{"model.name": "segformer_tiny"}) | {"params_m": 3.7, "gflops": 1.5},
        row(1, 0, 30.0, 31.0, 29.0, **{"model.name": "segnext_tiny"}) | {"params_m": 4.25, "gflops": None},
    ])
    table = R.backbone_table(bb)
    assert table.columns.tolist()[:3] == ["cfg.model.name", "params_m", "gflops"]
    assert table["cfg.model.name"].tolist() == ["segformer_tiny", "segnext_tiny"]
    assert table["params_m"].tolist() == [3.7, 4.25] and table["gflops"].iloc[0] == 1.5
    assert math.isnan(table["gflops"].iloc[1])
    assert table["hIoU_mean"].tolist() == [41.0, 30.0]
    md = R.to_markdown(R.format_pm(table))
    assert md.splitlines()[0] == "| backbone (model.name) | Parameter (M) | GFLOPs | hIoU | sIoU | uIoU | seeds |"
    assert "| segformer_tiny | 3.7 | 1.5 | 41.0 ± 1.4 | 41.0 ± 0.0 | 41.0 ± 2.8 | 2 |" in md
    assert "| segnext_tiny | 4.2 | – | 30.0 | 31.0 | 29.0 | 1 |" in md


def test_report_writes_md_csv_png(tmp_path: Path):
    upsert(tmp_path, "trials", ablation_rows())
    upsert(tmp_path, "curves", curves_rows())
    assert R.main([str(tmp_path)]) == 0
    out = tmp_path / "report"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "ablation.csv", "ablation.md", "failed.csv", "failed.md", "loss_curves.png"]
    csv = pd.read_csv(out / "ablation.csv")
    assert csv["hIoU_mean"].tolist() == [11.0, 38.5, 42.5] and csv["n_seeds"].tolist() == [2, 2, 2]
    md = (out / "ablation.md").read_text()
    assert "| Methods | hIoU | sIoU | uIoU | seeds |" in md
    assert "| baseline + distillation | 38.5 ± 0.7 | 41.0 ± 0.0 | 36.5 ± 0.7 | 2 |" in md
    assert "RuntimeError: boom" in (out / "failed.md").read_text()
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (out / "README.md").read_text()
    assert "6 of 7 trial runs completed" in readme and "loss_curves.png" in readme


def test_report_sensitivity_plot_and_missing_dir(tmp_path: Path, capsys):
    rows = [row(i, s, 30.0 + i + s, 40.0, 25.0 + i, **{"loss.tau": tau, "bank.size": 24})
            for i, tau in enumerate((0.03, 0.07, 0.2)) for s in (0, 1)]
    upsert(tmp_path, "trials", rows)
    written = R.write_report(tmp_path)
    assert {"sensitivity_loss.tau.csv", "sensitivity_loss.tau.md", "metric_vs_loss.tau.png"} <= set(written)
    csv = pd.read_csv(written["sensitivity_loss.tau.csv"])
    assert csv["hIoU_mean"].tolist() == [30.5, 31.5, 32.5]
    assert csv["hIoU_std"].tolist() == pytest.approx([math.sqrt(0.5)] * 3)
    assert written["metric_vs_loss.tau.png"].stat().st_size > 1000
    assert R.main([str(tmp_path / "nowhere")]) == 2
    assert "no trials.parquet" in capsys.readouterr().err


def test_backbone_params_fall_back_to_the_zoo(monkeypatch):
    import types

    import c2s.student

    calls = []

    def count_params(name, embed_dim=512, **overrides):
        calls.append((name, embed_dim))
        return {"segformer_tiny": 1_500_000, "segnext_tiny": 2_250_000}[name]

    monkeypatch.setattr(c2s.student, "zoo", types.SimpleNamespace(count_params=count_params), raising=False)
    bb = pd.DataFrame([row(i, 0, 40.0, 41.0, 39.0, **{"model.name": m}) | {"base": "toy_c2s"}
                       for i, m in enumerate(("segformer_tiny", "segnext_tiny"))])
    table = R.backbone_table(bb)
    assert table["params_m"].tolist() == [1.5, 2.25]
    assert calls == [("segformer_tiny", 256), ("segnext_tiny", 256)]  # toy_c2s sets model.embed_dim=256


@pytest.mark.parametrize(("key", "grid", "labels", "log"), [
    ("loss.tau", (0.03, 0.04, 0.07, 0.2), ["0.03", "0.04", "0.07", "0.2"], True),  # issue 14.12's overlap
    ("bank.size", (8, 16, 24, 48), ["8", "16", "24", "48"], False),
])
def test_sensitivity_plot_ticks_are_the_swept_values(key: str, grid: tuple, labels: list[str], log: bool):
    import matplotlib.pyplot as plt

    trials = pd.DataFrame([row(i, s, 30.0 + i + s, 40.0, 25.0 + i, **{key: v})
                           for i, v in enumerate(grid) for s in (0, 1)])
    fig = R.metric_vs_figure(trials, "cfg." + key)
    try:
        axes = fig.get_axes()
        assert len(axes) == 3  # hIoU, sIoU, uIoU
        for ax in axes:
            assert ax.get_xscale() == ("log" if log else "linear")
            assert ax.get_xticks().tolist() == pytest.approx(list(grid), rel=1e-12)
            assert [t.get_text() for t in ax.get_xticklabels()] == labels
            assert len(ax.xaxis.get_minorticklocs()) == 0  # no 3x10^-2-style minor labels
            assert not R._tick_labels_overlap(fig, ax)
    finally:
        plt.close(fig)


def test_plain_tick_labels():
    assert [R._plain(v) for v in (0.07, 0.2, 24.0, 1e-4, 2e-3, 1024)] == ["0.07", "0.2", "24", "0.0001", "0.002",
                                                                          "1024"]
