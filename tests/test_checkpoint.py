"""Checkpoints written in the background: what is written is the state at save time, and errors come back."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from transfer_core import checkpoint
from transfer_core.checkpoint import CheckpointWriter, load_checkpoint


def test_the_written_checkpoint_is_the_state_at_save_time(tmp_path):
    weights = torch.zeros(1000)
    optimizer_state = {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", {"net": {"w": weights}, "optimizer": optimizer_state, "epoch": 1})
    weights += 5                                         # training goes on while the file is written
    optimizer_state["state"][0]["exp_avg"].mul_(7)
    writer.wait()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(saved["net"]["w"], torch.zeros(1000)) and torch.equal(saved["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert saved["optimizer"]["param_groups"] == [{"lr": 0.1, "params": [0]}] and saved["epoch"] == 1


def test_a_failed_write_is_raised_at_the_next_save_or_wait_and_keeps_the_last_good_file(tmp_path, monkeypatch):
    writer = CheckpointWriter()
    path = tmp_path / "last.pt"
    writer.save(path, {"epoch": 1})
    writer.wait()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)   # simulated: nobody fills the disk for a test
    writer.save(path, {"epoch": 2})                         # returns at once; the write fails in the background
    with pytest.raises(OSError) as failed:
        writer.save(path, {"epoch": 3})
    assert failed.value.errno == errno.ENOSPC
    monkeypatch.undo()
    writer.wait()                                           # the error was handed over once
    assert load_checkpoint(path)["epoch"] == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_kept_state_stays_in_memory_until_the_next_save(tmp_path):
    writer = CheckpointWriter()
    path = tmp_path / "last.pt"
    weights = torch.zeros(4)
    writer.keep({"net": {"w": weights}, "accum": {"seen": 0}, "epoch": 0})
    weights += 1
    assert not path.exists()                                # nothing written
    first = writer.latest(path)
    first["accum"]["seen"] = 99                             # the caller may change what it got
    again = writer.latest(path)
    assert again["accum"]["seen"] == 0 and torch.equal(again["net"]["w"], torch.zeros(4))
    writer.save(path, {"epoch": 1})
    assert writer.latest(path)["epoch"] == 1                # the newer state, from the file
