"""The Train page's "Find a learning rate": the range test (transfer_core/lr_find.py) for the draft's settings, its
curve, and the suggested rate one click away from the form."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.lr_find import lr_find

from .charts import range_test
from .resources import allowed_roots, runs_dir
from .state import WIDGET_PREFIX, save_draft
from .ui import friendly

RESULT_KEY = "lr_find_result"


def _settings_key(cfg: RunConfig) -> str:
    """The settings the test depends on: all but the learning rate it looks for and the run length."""
    test = cfg.copy()
    test.optim.lr, test.train.epochs = 1.0, 1
    return test.to_json()


def lr_finder(cfg: RunConfig) -> None:
    with st.expander("Find a learning rate"):
        st.caption("A short test run (about 100 steps, not saved) whose learning rate grows from 1e-7 to 10: the "
                   "loss stays flat while the rate is too small, falls, then blows up. A good rate lies where it "
                   "falls; the suggestion is fastai's. It trains what your run would train first, with these "
                   "settings; frozen layers run once and their outputs are reused by the run.")
        key = _settings_key(cfg)
        if st.button("Run the test", key="lr_find_run", icon=":material/search:"):
            with friendly("run the learning-rate test"), st.spinner("Training at growing learning rates..."):
                st.session_state[RESULT_KEY] = (key, lr_find(cfg, runs_dir=runs_dir(), allowed_roots=allowed_roots()))
        saved = st.session_state.get(RESULT_KEY)
        if not saved:
            return
        tested, result = saved
        if tested != key:
            st.caption("The settings changed since the test: run it again for these.")
            return
        st.plotly_chart(range_test(result), key="lr_find_chart", config={"displayModeBar": False})
        if result.suggested_lr is None:
            st.warning("The loss never fell: no rate to suggest. Check the data, or try more steps.")
            return
        lr = float(f"{result.suggested_lr:.2g}")
        st.caption(f"Suggested: {lr:g}" + (f" (where it falls fastest: {result.steepest_lr:.2g})"
                                          if result.steepest_lr else "") + f"; the form has {cfg.optim.lr:g}.")
        if lr != cfg.optim.lr and st.button(f"Use {lr:g}", key="lr_find_use", type="primary", icon=":material/check:"):
            cfg.optim.lr = lr
            st.session_state.pop(WIDGET_PREFIX + "optim.lr", None)   # the form shows the new rate
            save_draft(cfg)
            st.rerun()
