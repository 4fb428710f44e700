"""Small shared UI pieces: friendly errors, status badges, number formatting, run pickers."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Literal

import streamlit as st

from transfer_core.errors import TransferError
from transfer_core.events import RunStatus
from transfer_core.summary import best_note

from .text import md

log = logging.getLogger("transfer_app")

BadgeColour = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray"]
STATUS_COLOURS: dict[str, BadgeColour] = {
    RunStatus.QUEUED: "gray", RunStatus.RUNNING: "blue", RunStatus.PAUSED: "orange", RunStatus.STOPPED: "violet",
    RunStatus.COMPLETED: "green", RunStatus.FAILED: "red", RunStatus.INTERRUPTED: "orange"}


def unexpected_message(exc: BaseException, action: str = "show this page") -> str:
    return (f"Could not {action}: something unexpected went wrong ({type(exc).__name__}). "
            "Try again or reload the page; if it keeps happening, the terminal running the app has the details.")


def show_error(exc: BaseException, action: str) -> None:
    """One friendly line naming the problem and what to do; never a traceback."""
    if isinstance(exc, TransferError):
        text = str(exc).strip()
        st.error(f"Could not {action}: {md(text[0].lower() + text[1:]) if text else 'unknown problem'}", icon=":material/error:")
    else:
        log.exception("unexpected error while trying to %s", action, exc_info=exc)
        st.error(unexpected_message(exc, action), icon=":material/error:")


def show_locked() -> None:
    """The page a browser gets when the pages are served without the access gate (app/access.py)."""
    st.title("Transfer Studio is locked")
    st.error("These pages are served without their access check. Start the app with `scripts/demo.sh` or "
             "`streamlit run streamlit_app.py` and open the address it prints (it ends in `?token=...`); to run it "
             "behind your own authentication instead, set `TRANSFER_STUDIO_NO_TOKEN=1`.", icon=":material/lock:")


@contextmanager
def friendly(action: str):
    """Run a block; any error becomes a friendly message and the rest of the page still draws."""
    try:
        yield
    except Exception as exc:  # st.rerun/st.stop raise BaseException subclasses and pass through
        show_error(exc, action)


def status_badge(status: str) -> None:
    st.badge(status, color=STATUS_COLOURS.get(status, "gray"))


def fmt_int(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n)}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("kB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    if seconds < 1:
        return "under 1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f} %"


def run_label(record) -> str:
    """A run's name in pickers. Only what never changes: Streamlit sends a selection back as its label,
    so a label that changed in between (a queued run starting, a new best accuracy) loses the choice."""
    return f"{record.name} · {record.id}"


def run_state(record) -> str:
    """Status and the validation accuracy of the run's model (and its best epoch where that is another), beside a picker."""
    summary = record.best_metrics or {}
    acc = summary.get("val_accuracy")
    note = best_note(summary)
    return (f"{record.status}" + (f" · your model's validation accuracy {fmt_pct(acc)}" if acc is not None else "")
            + (f" · {note}" if note else ""))


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop: engine messages may or may not end with one."""
    text = str(text).strip()
    return text if not text or text[-1] in ".!?" else text + "."


def pick_run(store, runs: list, *, key: str, label: str = "Run", default_id: str | None = None):
    """A selectbox over `runs` (RunRecords), defaulting to `default_id`; returns the chosen record."""
    if not runs:
        return None
    ids = [r.id for r in runs]
    by_id = {r.id: r for r in runs}
    if key not in st.session_state or st.session_state[key] not in by_id:
        st.session_state[key] = default_id if default_id in by_id else ids[0]
    chosen = st.selectbox(label, ids, key=key, format_func=lambda i: run_label(by_id[i]))
    st.caption(run_state(by_id[chosen]))
    return by_id[chosen]


@st.cache_resource
def page_icon():
    """The browser tab's icon, drawn here: a ":material/...:" or emoji icon makes every page load fetch it
    from a font or emoji server, and the app makes no outside request. Three stacked layers, the top one
    (the head) highlighted."""
    from PIL import Image, ImageDraw
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(((120, 144, 156), (120, 144, 156), (255, 75, 75))):
        top = 42 - i * 16
        draw.rounded_rectangle((6, top, 58, top + 12), radius=4, fill=colour + (255,))
    return image
