"""Edge cases of c2s/train/checkpoint.py that mutation testing found unpinned: the whole text of its errors
(each names the folder and what was expected)."""

from __future__ import annotations

import re

import pytest
import torch

from c2s.train.checkpoint import latest_checkpoint, load_state, rng_state, set_rng_state


def test_latest_checkpoint_error_is_the_whole_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        latest_checkpoint(tmp_path)
    assert str(err.value) == (f"no checkpoint_*/state.pt under {tmp_path} (not a c2s run directory, "
                              "or no checkpoint was reported yet)")


def test_load_state_error_is_the_whole_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"checkpoint file {tmp_path / 'state.pt'} not found (expected a c2s checkpoint directory)")):
        load_state(tmp_path)


def test_load_state_honours_map_location(tmp_path):
    torch.save({"step": 3, "w": torch.ones(2)}, tmp_path / "state.pt")
    assert load_state(tmp_path, map_location="meta")["w"].device.type == "meta"
    assert load_state(tmp_path)["w"].device.type == "cpu"


def test_cuda_rng_states_round_trip_when_cuda_is_there(monkeypatch):
    """The CUDA generator states are saved under "cuda" and restored from there (fakes stand in for the GPU)."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([7], dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = rng_state()
    assert torch.equal(state["cuda"][0], torch.tensor([7], dtype=torch.uint8))
    set_rng_state(state)
    assert len(restored) == 1 and torch.equal(restored[0][0], torch.tensor([7], dtype=torch.uint8))
    set_rng_state({k: v for k, v in state.items() if k != "cuda"})  # a CPU checkpoint on a GPU machine
    assert len(restored) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    set_rng_state(state)  # a GPU checkpoint on a CPU machine: the CUDA states are not touched
    assert len(restored) == 1 and "cuda" not in rng_state()
