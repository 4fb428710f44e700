"""User-supplied text (class labels, file names, texts, run and model names) shown as text.

Streamlit reads the body of st.markdown, st.caption, st.info/.success/.warning/.error, st.toast, widget
labels, radio options, image captions and metric labels as Markdown with its own extensions: a label
`![t](http://host/p.png)` would make the browser fetch that address, `[x](http://...)` would become a
link, `:red[...]` would colour, `$x^2$` would be typeset. Plotly reads trace names, tick labels and
hover text as a subset of HTML (`<a href>`, `<b>`, `<br>`). Whatever came from the user goes through
`md()` (Markdown) or `plot()` (Plotly) before it meets one of them; elements that do not interpret
their text (st.text, st.code, st.dataframe cells, selectbox options) take it as it is.
"""
from __future__ import annotations

import html
import re

# The characters that start Markdown or Streamlit markup anywhere in a line: emphasis and strikethrough,
# code spans, links and images ("[" and "]"; "![" and "](" need one of them), raw HTML, entities, tables,
# $ maths, and the backslash itself. An escaped one is always a literal character. Other punctuation
# (".", ",", ";", "-", "(", "'" ...) stays as it is, so engine messages and file names read as before.
_SPECIAL = re.compile(r"([\\`*\[\]<>&|~$#{}])")
# "_" opens emphasis only at a word boundary; "tiny_cnn" or "staged_head_epochs" stay untouched.
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# A list marker ("-", "+", "1." or "1)") where the text begins a block ("*", ">" and "#" are escaped above).
_LEADING = re.compile(r"^(\s*)([-+]|\d+[.)])(?=\s|$)")
# Line breaks and other control characters would end the paragraph the text sits in (a new line
# starting with "#" or "-" is a heading or a list item) or the table row, so they become spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Two kinds of markup run on the text after Markdown has removed the escapes, so a backslash cannot
# stop them: Streamlit's ":name:" emoji and ":material/name:" icons (and its ":red[...]" colours), and
# GFM's bare links ("http://...", "www.x.org", "a@b.org"). A word joiner (zero width, never shown)
# after such a colon, after "www" and before "@" breaks each of their patterns.
WORD_JOINER = "\u2060"
_JOIN = re.compile(r"(:)(?=[A-Za-z0-9_+\-/\\])|(www)(?=\.)|(@)", re.IGNORECASE)


def _join(match: re.Match) -> str:
    if match.group(3):
        return WORD_JOINER + match.group(3)
    return (match.group(1) or match.group(2)) + WORD_JOINER


def md(value: object) -> str:
    """`value` as Markdown that Streamlit shows as exactly that text, on one line."""
    text = _CONTROL.sub(" ", str(value))
    text = _SPECIAL.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    text = _LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2) if m.group(2) in "-+" else
                        m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)
    return _JOIN.sub(_join, text)


def plot(value: object) -> str:
    """`value` for a Plotly trace name, tick label, category or hover text: Plotly shows HTML entities
    as the characters they stand for, so `<a href=...>` reads as typed instead of becoming a link."""
    return html.escape(_CONTROL.sub(" ", str(value)), quote=False)
