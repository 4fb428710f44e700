"""Bad data through `prepare_data`, the step the trainer, the Data page and `report` all run.

Each case of badinputs.py is one named test: a refusal is one DataError line naming the problem
and the fix; a usable case skips the bad item and says so; nothing is written outside the data
folder and the extraction cache; and the engine keeps working (a good data set prepares after it).
"""
from __future__ import annotations

import time

import pytest

from badinputs import ALL_CASES, Case
from datafiles import files_under, image_tree
from transfer_core.config import RunConfig
from transfer_core.errors import DataError
from transfer_core.preparation import prepare_data


UNSAFE_ZIPS = {"zip_dotdot_entry", "zip_absolute_entry", "zip_symlink_entry", "zip_bomb", "zip_100000_entries",
               "zip_empty", "not_a_zip_named_zip"}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """data/ for the user's files, cache/ for extracted zips; the test checks nothing else appears."""
    monkeypatch.setenv("TRANSFER_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def prepare(path) -> object:
    cfg = RunConfig()
    cfg.data.path = str(path)
    return prepare_data(cfg)


def assert_one_line(message: str, fragment: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message
    assert fragment in message, message
    assert ";" in message or ". " in message, f"no fix given: {message}"   # the problem, then what to do


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_prepare_data(case: Case, sandbox):
    data = case.build(sandbox / "data")
    before = files_under(sandbox / "data")
    start = time.monotonic()
    if case.error:
        with pytest.raises(DataError) as err:
            prepare(data)
        assert_one_line(str(err.value), case.error)
    else:
        prepared = prepare(data)
        if case.notice:
            assert any(case.notice in n for n in prepared.notices + prepared.dataset.warnings), prepared.notices
        if case.check:
            case.check(prepared)
    assert time.monotonic() - start < 20, "bad input handling must stay fast"
    # Nothing written beside the data, nothing changed in it; a refused zip leaves no extraction behind.
    assert set(p.name for p in sandbox.iterdir()) <= {"data", "cache"}
    assert files_under(sandbox / "data") == before
    extracted = sandbox / "cache" / "extracted"
    if extracted.exists():   # no half-written extraction; an unsafe zip leaves nothing at all
        assert not [p for p in extracted.iterdir() if p.name.startswith(".extracting")]
        if case.id in UNSAFE_ZIPS:
            assert not any(extracted.iterdir()), files_under(extracted)
    assert not (sandbox.parent / "escaped.txt").exists() and not (sandbox / "escaped.txt").exists()
    # The engine still works after the bad input.
    good = image_tree(sandbox / "good", {"a": 3, "b": 3})
    assert prepare(good).classes == ["a", "b"]


def test_decompression_bomb_is_never_decoded(sandbox, monkeypatch):
    """The bomb's header claims 10 gigapixels; the report refuses it from the header alone."""
    from PIL import Image
    data = next(c for c in ALL_CASES if c.id == "decompression_bomb_png").build(sandbox / "data")
    loads = []
    original = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size) or original(self))
    prepare(data)
    assert (100_000, 100_000) not in loads
