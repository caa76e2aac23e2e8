"""tools/claim_grid.py: a draw's command, its row, the summary over draws, and a folder of another command."""

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("claim_grid", Path(__file__).parents[2] / "tools" / "claim_grid.py")
grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grid)


def _result(base_u, base_h, c2s_u, c2s_h):
    return {"baseline": {"sIoU": 40.0, "uIoU": base_u, "hIoU": base_h},
            "c2s": {"sIoU": 50.0, "uIoU": c2s_u, "hIoU": c2s_h}, "wall_s": 1.0}


def test_the_draws_seeds_come_last_so_they_win_over_the_users_overrides(tmp_path):
    cmd = grid.draw_command(tmp_path, 1, 0, ["optim.lr=6e-4", "train.seed=7"])
    assert cmd[1:6] == ["-m", "c2s.cli", "demo", "--out", str(tmp_path / "clip1_seed0")]
    assert cmd[6:] == ["optim.lr=6e-4", "train.seed=7", "toy_clip.seed=1", "train.seed=0"]


def test_rows_and_summary_by_hand():
    good = {"acc": 0.9934, "acc_unseen": 0.9912}
    rows = [
        grid.draw_row(0, 0, _result(12.88, 20.12, 43.91, 47.26), good),  # +31.03 / +27.14
        grid.draw_row(1, 1, _result(23.07, 29.02, 38.16, 43.49), good),  # +15.09 / +14.47
        grid.draw_row(2, 0, _result(4.8, 8.4, 28.1, 33.1), {"acc": 0.9746, "acc_unseen": 0.9736}),  # CLIP misses
    ]
    assert (rows[0]["claim_uIoU"], rows[0]["claim_hIoU"]) == (31.03, 27.14)
    assert (rows[1]["claim_uIoU"], rows[1]["claim_hIoU"]) == (15.09, 14.47)
    assert [r["clip_meets_goal"] for r in rows] == [True, True, False]
    summary = grid.summarise(rows, goal=15.0)
    assert summary == {"draws": 3, "draws_clip_meets_goal": 2, "goal": 15.0,
                       "min_claim_uIoU": 15.09, "mean_claim_uIoU": 23.06,
                       "min_claim_hIoU": 14.47, "mean_claim_hIoU": 20.8,
                       "draws_reaching_goal": 1}  # the second misses on hIoU; the third is not summarised
    assert grid.summarise(rows[2:], goal=15.0) == {"draws": 1, "draws_clip_meets_goal": 0, "goal": 15.0}


def test_a_finished_draw_is_read_and_another_commands_draw_is_refused(tmp_path):
    folder = grid.draw_dir(tmp_path, 0, 0)
    folder.mkdir()
    (folder / "command.json").write_text(json.dumps(grid.draw_command(tmp_path, 0, 0, [])[1:]))
    (folder / "demo.json").write_text(json.dumps(_result(1.0, 2.0, 3.0, 4.0)))
    assert grid.run_draw(tmp_path, 0, 0, [], timeout_s=1)["c2s"]["uIoU"] == 3.0  # no demo run
    with pytest.raises(SystemExit, match="holds a draw of another command"):
        grid.run_draw(tmp_path, 0, 0, ["optim.lr=6e-4"], timeout_s=1)


def test_overrides_after_the_seed_lists_are_overrides_not_seeds(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run_draw(out, clip_seed, run_seed, overrides, timeout_s):
        calls.append((clip_seed, run_seed, overrides))
        return _result(10.0, 10.0, 30.0, 28.0)

    monkeypatch.setattr(grid, "run_draw", fake_run_draw)
    monkeypatch.setattr(grid, "clip_accuracy", lambda overrides, seed: {"acc": 0.995, "acc_unseen": 0.99})
    argv = ["optim.lr=6e-4", "--out", str(tmp_path), "--clip-seeds", "1", "--run-seeds", "0", "2",
            "train.batch_size=8", "--goal=17"]
    assert grid.main(argv) == 0
    assert calls == [(1, 0, ["optim.lr=6e-4", "train.batch_size=8"]), (1, 2, ["optim.lr=6e-4", "train.batch_size=8"])]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["goal"], summary["draws_reaching_goal"], summary["min_claim_uIoU"]) == (17.0, 2, 20.0)


def test_only_dotted_key_value_words_are_overrides():
    assert [grid.is_override(w) for w in ("optim.lr=6e-4", "train.batch_size=8", "teacher.actors=[2,4]")] == [True] * 3
    assert [grid.is_override(w) for w in ("--goal=17", "/tmp/lr=2e-3", "runs/a=b", "3", "=1")] == [False] * 5


def test_an_options_value_that_looks_like_an_override_stays_that_options_value():
    argv = ["--out", "grid_lr=2e-3", "optim.lr=2e-3", "--goal", "12", "--timeout-s", "a=1", "--run-seeds", "0",
            "train.seed=3"]
    assert grid.split_overrides(argv) == (
        ["--out", "grid_lr=2e-3", "--goal", "12", "--timeout-s", "a=1", "--run-seeds", "0"],
        ["optim.lr=2e-3", "train.seed=3"])


def test_a_grid_folder_named_like_an_override_is_the_grid_folder(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run_draw(out, clip_seed, run_seed, overrides, timeout_s):
        seen.append((out, overrides))
        return _result(10.0, 15.0, 30.0, 35.0)

    monkeypatch.setattr(grid, "run_draw", fake_run_draw)
    monkeypatch.setattr(grid, "clip_accuracy", lambda overrides, seed: {"acc": 0.995, "acc_unseen": 0.99})
    monkeypatch.chdir(tmp_path)  # a relative folder, as a user types it: an absolute path never looks like a key
    Path("grid_lr=2e-3").mkdir()
    assert grid.main(["--out", "grid_lr=2e-3", "--clip-seeds", "0", "--run-seeds", "0", "optim.lr=2e-3"]) == 0
    assert seen == [(Path("grid_lr=2e-3"), ["optim.lr=2e-3"])]
    assert json.loads((tmp_path / "grid_lr=2e-3" / "grid.json").read_text())["summary"]["min_claim_uIoU"] == 20.0
