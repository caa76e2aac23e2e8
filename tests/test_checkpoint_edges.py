"""Edge cases of c2s/train/checkpoint.py that mutation testing found unpinned: the whole text of its errors
(each names the folder and what was expected)."""

from __future__ import annotations

import re

import pytest

from c2s.train.checkpoint import latest_checkpoint, load_state


def test_latest_checkpoint_error_is_the_whole_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        latest_checkpoint(tmp_path)
    assert str(err.value) == (f"no checkpoint_*/state.pt under {tmp_path} (not a c2s run directory, "
                              "or no checkpoint was reported yet)")


def test_load_state_error_is_the_whole_message(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"checkpoint file {tmp_path / 'state.pt'} not found (expected a c2s checkpoint directory)")):
        load_state(tmp_path)
