import json

import pytest

from transfer_core.data import load_dataset
from transfer_core.errors import DataError


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def test_basic_csv_detects_columns_case_insensitively(tmp_path):
    ds = load_dataset(write(tmp_path, "r.csv", "id,Review,Sentiment\n1,Great film,pos\n2,Dull,neg\n"))
    assert ds.modality == "text" and ds.labels == ["pos", "neg"]
    assert [s.input for s in ds.samples] == ["Great film", "Dull"]
    assert [s.id for s in ds.samples] == ["row 1", "row 2"] and ds.warnings == []


def test_utf8_bom_is_silent(tmp_path):
    ds = load_dataset(write(tmp_path, "b.csv", "\ufefftext,label\ncafé,fr\n"))
    assert ds.samples[0].input == "café" and ds.warnings == []


def test_cp1252_is_detected_and_named_in_a_warning(tmp_path):
    body = "text,label\n" + '"Très bon café, déjà vu à Noël – “superbe” €5",pos\n' * 3 + "Mauvais,neg\n"
    ds = load_dataset(write(tmp_path, "w.csv", body, encoding="cp1252"))
    assert ds.samples[0].input == "Très bon café, déjà vu à Noël – “superbe” €5"
    assert len(ds.warnings) == 1 and "cp1252" in ds.warnings[0] and "not UTF-8" in ds.warnings[0]


def test_latin1_bytes_still_load(tmp_path):
    ds = load_dataset(write(tmp_path, "l.csv", "text,label\nJoão está aqui,pt\nNão,pt\n", encoding="latin-1"))
    assert ds.samples[0].input == "João está aqui" and "not UTF-8" in ds.warnings[0]


def test_quoted_newlines_commas_and_na_text(tmp_path):
    body = 'text,label\n"line one\nline two, with comma",a\nNA,b\n"say ""hi""",a\n'
    ds = load_dataset(write(tmp_path, "q.csv", body))
    assert [s.input for s in ds.samples] == ["line one\nline two, with comma", "NA", 'say "hi"']


def test_blank_and_nan_labels_are_skipped_and_listed(tmp_path):
    ds = load_dataset(write(tmp_path, "n.csv", "text,label\na,x\nb,\nc,NaN\nd,  y  \n   ,x\n"))
    assert [(s.input, s.label) for s in ds.samples] == [("a", "x"), ("d", "y")]
    assert ds.skipped == [("row 2", "no label"), ("row 3", "no label"), ("row 5", "empty text")]
    assert any("no label" in w and "row 2" in w for w in ds.warnings)


def test_labels_keep_spaces_unicode_and_numbers_exactly(tmp_path):
    body = "text,label\na,  very good \nb,очень плохо\nc,1\nd,日本\ne,1.5\n"
    ds = load_dataset(write(tmp_path, "u.csv", body))
    assert ds.labels == ["very good", "очень плохо", "1", "日本", "1.5"]


def test_one_megabyte_row(tmp_path):
    big = "word " * 220_000
    ds = load_dataset(write(tmp_path, "big.csv", f'text,label\n"{big}",long\nshort,small\n'))
    assert len(ds.samples[0].input) == len(big) and ds.labels == ["long", "small"]


def test_tsv_and_semicolon_csv(tmp_path):
    ds = load_dataset(write(tmp_path, "t.tsv", "sentence\tclass\nhello, world\tgreet\nbye\tpart\n"))
    assert ds.samples[0].input == "hello, world" and ds.classes == ["greet", "part"]
    ds = load_dataset(write(tmp_path, "s.csv", "text;label\nbonjour, monde;fr\nhallo;de\n"))
    assert ds.samples[0].input == "bonjour, monde"


def test_jsonl_with_numeric_and_null_labels(tmp_path):
    lines = [{"text": "a", "label": 1}, {"text": "b", "label": 2.0}, {"text": "c", "label": None}, {"text": "d"},
             {"text": "e", "label": "neg"}]
    ds = load_dataset(write(tmp_path, "d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n"))
    assert ds.labels == ["1", "2", "neg"]
    assert [sid for sid, _ in ds.skipped] == ["row 3", "row 4"]


def test_jsonl_bad_line_names_the_line(tmp_path):
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_dataset(write(tmp_path, "bad.jsonl", '{"text": "a", "label": "x"}\n{oops\n'))


def test_column_overrides_and_two_column_guess(tmp_path):
    path = write(tmp_path, "o.csv", "title,body,tag\nT1,long body one,x\nT2,long body two,y\n")
    ds = load_dataset(path, text_column="title", label_column="TAG")
    assert [s.input for s in ds.samples] == ["T1", "T2"] and ds.labels == ["x", "y"]
    ds = load_dataset(write(tmp_path, "g.csv", "a,b\nthis is a long sentence,pos\nanother long one here,neg\n"))
    assert ds.labels == ["pos", "neg"] and "guessed 'a' as the text column" in ds.warnings[0]


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("   \n\n", "is empty"),
    ("text,label\n", "header but no rows"),
    ("text,stars,extra\nhi,5,x\n", "no label column.*data.label_column=NAME"),
    ("words,label,other\nhi,x,y\n", "no text column.*data.text_column=NAME"),
    ("text,label\na,b,c\n", "not valid CSV"),
    ("text,label\n,\n , \n", "no usable rows"),
])
def test_bad_tables_raise_one_line_errors(tmp_path, content, message):
    with pytest.raises(DataError, match=message) as e:
        load_dataset(write(tmp_path, "bad.csv", content))
    assert "\n" not in str(e.value)


def test_unknown_override_lists_columns(tmp_path):
    path = write(tmp_path, "c.csv", "text,label\na,b\n")
    with pytest.raises(DataError, match=r"no column 'sentiment' \(columns: text, label\)"):
        load_dataset(path, label_column="sentiment")


def test_binary_file_named_csv(tmp_path):
    with pytest.raises(DataError):
        load_dataset(write(tmp_path, "x.csv", bytes(range(256)) * 8))


def test_missing_path_and_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a supported data file"):
        load_dataset(write(tmp_path, "data.xlsx", b"PK\x03\x04"))


def test_cyrillic_code_page_is_detected(tmp_path):
    body = "text,label\n" + "Съешь же ещё этих мягких французских булок, да выпей чаю,рус\n".replace(", да", " да") * 3
    ds = load_dataset(write(tmp_path, "ru.csv", body, encoding="cp1251"))
    assert ds.labels == ["рус"] * 3 and "cp1251" in ds.warnings[0]
