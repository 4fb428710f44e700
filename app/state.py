"""Per-session state: the draft run config being edited, and the run this tab follows.

The draft lives in `st.session_state` as a plain dict. Widgets keep their own keys
(`cfg.<section>.<name>`); when the draft is replaced wholesale (a demo button, a loaded
config) those keys are dropped so the widgets show the new values. The latest draft is also
kept in `<data>/last_config.json`, so a reloaded page (a new session) continues where it was.
"""
from __future__ import annotations

import json

import streamlit as st

from transfer_core.atomic import write_json
from transfer_core.config import ConfigError, RunConfig
from transfer_core.errors import RunError
from transfer_core.events import RunStatus

from .nav import page_file
from .text import md

DRAFT = "draft_config"
CURRENT_RUN = "current_run"
WIDGET_PREFIX = "cfg."
AUTO_RATES = "auto_rates"    # the learning rates the form itself chose last (app/forms.py follow_recommended_rates)


def _last_config_path():
    from .resources import data_dir
    return data_dir() / "last_config.json"


def _form_rates_path():
    from .resources import data_dir
    return data_dir() / "form_rates.json"


def form_rates() -> dict | None:
    """The learning rates the form chose last (AUTO_RATES): this session's, or after a reload the last
    session's, kept beside the draft so that a rate the user set (or a recipe did) stays theirs. None: unknown."""
    chosen = st.session_state.get(AUTO_RATES)
    if chosen is None:
        try:
            data = json.loads(_form_rates_path().read_text(encoding="utf-8"))
            chosen = {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            chosen = None
    return chosen


def set_form_rates(ours: dict | None) -> None:
    """Record the rates the form chose (None: it chose none yet, as for a new draft)."""
    before = st.session_state.get(AUTO_RATES)
    if ours is None:
        st.session_state.pop(AUTO_RATES, None)
        _form_rates_path().unlink(missing_ok=True)
        return
    st.session_state[AUTO_RATES] = ours
    if ours != before:
        try:
            write_json(_form_rates_path(), ours, indent=None)
        except OSError:
            pass   # a convenience, as the draft is


def draft() -> RunConfig:
    data = st.session_state.get(DRAFT)
    if data is None:   # a new session (first visit or a reload): continue from the last draft
        try:
            data = json.loads(_last_config_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        st.session_state[DRAFT] = data or RunConfig().to_dict()
    if data:
        try:
            return RunConfig.of_saved_run(data)   # an older layout is upgraded (config.CONFIG_VERSION)
        except ConfigError as exc:
            _set_draft_aside(exc)
    return RunConfig()


def _set_draft_aside(exc: ConfigError) -> None:
    """A draft no upgrade can read (written by a newer version, or edited by hand): keep the file, say so
    once, and start from the defaults."""
    st.session_state[DRAFT] = RunConfig().to_dict()
    set_form_rates(None)
    path = _last_config_path()
    kept = path.with_name("last_config.unreadable.json")
    try:
        path.replace(kept)
    except OSError:
        kept = path
    st.warning(f"Your last settings could not be read ({md(str(exc))}); the pages start from the defaults. "
               f"The old file is kept as {md(str(kept))}.", icon=":material/history:")


def save_draft(cfg: RunConfig) -> None:
    data = cfg.to_dict()
    if st.session_state.get(DRAFT) == data:
        return
    st.session_state[DRAFT] = data
    try:
        write_json(_last_config_path(), data, indent=None)
    except OSError:
        pass   # remembering the draft is a convenience; never fail a page for it


def replace_draft(cfg: RunConfig) -> None:
    """Make `cfg` the draft and forget widget values that still show the old one."""
    for key in [k for k in st.session_state.keys() if str(k).startswith(WIDGET_PREFIX)]:
        del st.session_state[key]
    set_form_rates(None)   # the new draft's stock rates count as the form's own again
    save_draft(cfg)


SCRIPT_RUNS = "script_runs"            # full script runs of this session, counted by the router
WIDGETS_DRAWN = "widgets_drawn"        # widget key -> the script run that last drew it


def count_script_run() -> None:
    """Called by the router at the top of every full script run (fragment reruns do not pass it)."""
    st.session_state[SCRIPT_RUNS] = st.session_state.get(SCRIPT_RUNS, 0) + 1


def seed_widget(key: str, value) -> None:
    """Before drawing the widget keyed `key`: give it `value` the first time, and make sure the
    browser shows the value the widget will return when it is drawn again after a run without it.

    A page that ends early (`st.stop()`) skips Streamlit's clean-up of the widgets it did not
    draw, so their values stay in session state while the browser drops the widgets. Drawn again,
    such a widget returns the kept value, but the browser mounts it at its element default (for a
    number box, its minimum) because only a value assigned to the key in this run is sent to the
    browser (streamlit#4247). Assigning the kept value to the key again sends it."""
    runs = st.session_state.get(SCRIPT_RUNS, 0)
    drawn = st.session_state.setdefault(WIDGETS_DRAWN, {})
    if key not in st.session_state:
        st.session_state[key] = value
    elif drawn.get(key, -1) < runs - 1:
        # Not drawn in the run before this one: the browser no longer holds it. A widget drawn in
        # that run is left alone, so a value being typed into it is never overwritten.
        st.session_state[key] = st.session_state[key]
    drawn[key] = runs


def has_data(cfg: RunConfig) -> bool:
    return bool(cfg.data.path.strip())


def set_current_run(run_id: str | None) -> None:
    st.session_state[CURRENT_RUN] = run_id
    if run_id:
        st.query_params["run"] = run_id
    elif "run" in st.query_params:
        del st.query_params["run"]


def open_on_train_page(run_id: str) -> None:
    """Follow `run_id` and go to the Train page, with the run in the URL (switch_page clears the query)."""
    set_current_run(run_id)
    st.switch_page(page_file("3_train"), query_params={"run": run_id})


def current_run_id(store, *, attach_active: bool = True) -> str | None:
    """The run this tab follows: the one it started or opened, the one in the URL (after a
    reload), else the newest active run (a second tab, or a run started from the CLI)."""
    for candidate in (st.session_state.get(CURRENT_RUN), st.query_params.get("run")):
        if candidate:
            try:
                return store.get_run(candidate).id
            except RunError:
                continue
    if attach_active:
        active = store.list_runs(status=RunStatus.ACTIVE, limit=1)
        if active:
            st.session_state[CURRENT_RUN] = active[0].id
            return active[0].id
    return None
