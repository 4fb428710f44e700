"""Read CSV/TSV/JSONL files into an all-string DataFrame and find the columns that matter."""
from __future__ import annotations

import codecs
import io
import json
from pathlib import Path

import charset_normalizer
import pandas as pd

from ..errors import DataError

TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".jsonl", ".ndjson"})

TEXT_NAMES = ("text", "sentence", "review", "content", "body", "document", "message", "comment", "tweet")
LABEL_NAMES = ("label", "class", "category", "target", "labels", "sentiment", "topic")
IMAGE_NAMES = ("image", "path", "file", "filename", "image_path", "img", "filepath", "file_path", "image_file", "file_name")

_LATIN_CODE_PAGES = {
    "cp1250", "cp1252", "cp1254", "cp1257", "cp437", "cp775", "cp850", "cp852", "cp857", "cp858", "cp860",
    "cp861", "cp863", "cp865", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9", "iso8859_10",
    "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "mac_latin2", "mac_roman", "mac_iceland",
    "mac_turkish", "hp_roman8",
}


def decode(data: bytes, name: str) -> tuple[str, str | None]:
    """Text of the file and, when it was not UTF-8, the encoding that was guessed."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise DataError(f"{name} is not a text file (no text encoding fits it); export the data as UTF-8 CSV.")
    if best.encoding in _LATIN_CODE_PAGES:
        # The detector cannot tell Latin-alphabet code pages apart on short files (it
        # reads "à" as Baltic "ą"); cp1252, Excel's default in Western locales, is by far
        # the most likely, so it wins whenever the bytes are valid cp1252.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    return str(best), best.encoding


def read_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """All cells as str ("" where empty); header names stripped and made unique."""
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{name} cannot be read ({e.strerror}); check the path and permissions.") from None
    text, encoding = decode(data, name)
    notes = []
    if encoding:
        notes.append(f"{name} is not UTF-8; it was read as {encoding}, so check that accented characters look right or save it as UTF-8.")
    if not text.strip():
        raise DataError(f"{name} is empty; add a header row and one row per example.")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        df = _read_jsonl(text, name)
    else:
        df = _read_delimited(text, name, "\t" if path.suffix.lower() == ".tsv" else _sniff_separator(text))
    if len(df) == 0:
        raise DataError(f"{name} has a header but no rows; add one row per example.")
    return df, notes


def _sniff_separator(text: str) -> str:
    """Comma unless the header clearly uses semicolons or tabs (European Excel, renamed TSV)."""
    header = text.lstrip().split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 and counts[","] == 0 else ","


def _read_delimited(text: str, name: str, sep: str) -> pd.DataFrame:
    # header=None makes the first line fix the field count, so a row with an extra
    # field is an error instead of pandas silently turning column 1 into an index.
    try:
        raw = pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
                          na_filter=False, skip_blank_lines=True, engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty; add a header row and one row per example.") from None
    except (pd.errors.ParserError, ValueError) as e:
        detail = str(e).strip().splitlines()[-1]
        raise DataError(f"{name} is not valid CSV ({detail}); quote fields that contain the separator or line breaks.") from None
    header = _unique([str(c).strip() for c in raw.iloc[0]])
    df = raw.iloc[1:].reset_index(drop=True)
    df.columns = header
    return df


def _read_jsonl(text: str, name: str) -> pd.DataFrame:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataError(f"{name} line {number} is not a JSON object; write one {{\"text\": ..., \"label\": ...}} object per line.")
            records.append({str(k).strip(): _cell(v) for k, v in record.items()})
        except json.JSONDecodeError as e:
            raise DataError(f"{name} line {number} is not valid JSON ({e.msg}); write one JSON object per line.") from None
        except RecursionError:
            raise DataError(f"{name} line {number} nests lists or objects too deeply to read; "
                            "write the text and the label as plain values on that line.") from None
        except ValueError as e:
            # Python refuses to convert integers of more than 4,300 digits (a guard against slow parsing).
            if "digits" not in str(e):
                raise
            raise DataError(f"{name} line {number} holds a number with thousands of digits; "
                            "write the label as a short name or number (in quotes if it must stay long).") from None
    return pd.DataFrame.from_records(records).fillna("")


def _cell(value) -> str:
    """JSON values as the text a user would expect: 1 and 1.0 -> "1", null -> ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        n = n or "column"
        if n in seen:
            seen[n] += 1
            n = f"{n}.{seen[n]}"
        seen.setdefault(n, 0)
        out.append(n)
    return out


def find_column(columns: list[str], requested: str, names: tuple[str, ...], *, file: str, role: str, setting: str) -> str | None:
    """The column the user asked for (exact, then case-insensitive), else the first common name present."""
    lower = {c.lower(): c for c in reversed(columns)}
    if requested:
        if requested in columns:
            return requested
        if requested.lower() in lower:
            return lower[requested.lower()]
        raise DataError(f"{file} has no column '{requested}' (columns: {', '.join(columns)}); "
                        f"choose the {role} column with --set data.{setting}=NAME.")
    return next((lower[n] for n in names if n in lower), None)
