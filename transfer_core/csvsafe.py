"""CSV cells a spreadsheet will not run.

A class label, file name or text that begins with `=`, `+`, `-` or `@` (or a tab or carriage return)
is a formula to Excel, LibreOffice and Google Sheets: `=HYPERLINK("http://...","x")` in
predictions.csv would run when the file is opened. Every CSV the app or the command line writes goes
through `neutralise_frame` (the OWASP recipe: such a cell gets a leading single quote, which the
spreadsheet shows as text), and every one it reads back goes through `restore_frame`.

The mapping is reversible: a cell that already begins with a quote gets one more, and reading removes
exactly one leading quote, so `'=x`, `=x` and `'x` all come back as written. Plain numbers such as
`-1` or `+0.5` stay as they are: a spreadsheet reads them as numbers, never as formulas, and class
names like "-1" are common.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

QUOTE = "'"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise(value: str) -> str:
    """`value` as a CSV cell that no spreadsheet evaluates."""
    if value.startswith(QUOTE) or (value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value)):
        return QUOTE + value
    return value


def restore(value: str) -> str:
    """The value `neutralise` was given."""
    return value[1:] if value.startswith(QUOTE) else value


def _text_columns(frame: pd.DataFrame, columns: Iterable[str] | None) -> list[str]:
    if columns is not None:
        return [c for c in columns if c in frame.columns]
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]


def neutralise_frame(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A copy of `frame` with its text cells (or those of `columns`) and its column names neutralised."""
    out = frame.copy()
    for col in _text_columns(frame, columns):
        out[col] = [neutralise(v) if isinstance(v, str) else v for v in out[col]]
    out.columns = [neutralise(c) if isinstance(c, str) else c for c in out.columns]
    return out


def restore_frame(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """`frame` (read with those columns as text) with the cells of `columns` restored in place."""
    for col in columns:
        if col in frame.columns:
            frame[col] = [restore(v) if isinstance(v, str) else v for v in frame[col]]
    return frame


# Rows end in CR LF (RFC 4180). Python's csv module quotes a cell only when it holds a character of the
# line ending: with "\n" alone, a carriage return inside a label went out bare, and spreadsheets start
# a new row there, whose first cell ("=..." after it) escaped the quote above.
LINE_END = "\r\n"


def write_csv(frame: pd.DataFrame, path, columns: Iterable[str] | None = None) -> None:
    """`frame` to `path` with its text cells (or those of `columns`) neutralised."""
    neutralise_frame(frame, columns).to_csv(path, index=False, lineterminator=LINE_END)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame` as neutralised UTF-8 CSV, e.g. for a download button."""
    return neutralise_frame(frame).to_csv(index=False, lineterminator=LINE_END).encode("utf-8")
