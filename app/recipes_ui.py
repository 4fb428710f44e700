"""The Recipes box on the Model page: a classic recipe's settings put into the draft, to change from there."""
from __future__ import annotations

import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.recipes import RECIPES

from .forms import describe_value, label_for
from .state import WIDGET_PREFIX, save_draft

RECIPE_KEY = "recipe_choice"


def recipe_box(cfg: RunConfig) -> None:
    st.subheader("Recipes")
    st.caption("Start from a classic transfer-learning recipe: it fills the settings below and on the Train page, "
               "and you can change any of them afterwards.")
    names = list(RECIPES)
    name = st.selectbox("Recipe", names, index=None, key=RECIPE_KEY, placeholder="Choose a recipe...",
                        format_func=lambda n: RECIPES[n].title)
    if name is None:
        return
    recipe = RECIPES[name]
    st.markdown(recipe.about)
    st.caption("It sets: " + " · ".join(f"{label_for(k)} **{describe_value(v)}**" for k, v in recipe.settings.items()))
    if st.button("Apply this recipe", key="recipe_apply", icon=":material/menu_book:"):
        recipe.apply(cfg)
        for key in recipe.settings:   # the widgets show the recipe's values when drawn next
            st.session_state.pop(WIDGET_PREFIX + key, None)
        save_draft(cfg)
        st.toast(f"Applied the recipe: {recipe.title}.")
        st.rerun()
