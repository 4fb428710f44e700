"""The Results page's embedding map: the validation samples in the space the head reads, before and after
training, side by side (transfer_core/embedding.py)."""
from __future__ import annotations

import streamlit as st

from transfer_core.embedding import EmbeddingMap, embedding_map, map_figure
from transfer_core.run_files import WEIGHTS_FILE

from .resources import allowed_roots, get_store
from .text import plot
from .ui import friendly

METHODS = {"pca": "PCA (fast; distances mean something)", "tsne": "t-SNE (groups neighbours; slower)"}


@st.cache_data(show_spinner=False, max_entries=8)
def _map(run_id: str, weights_mtime: float, method: str) -> EmbeddingMap:
    # (the weights' time: a run trained further is mapped again)
    return embedding_map(get_store(), run_id, method=method, allowed_roots=allowed_roots())


def map_section(store, record) -> None:
    if not st.toggle("Show the embedding map: the validation samples before and after training", key="embed_on"):
        return
    method = st.radio("Map by", list(METHODS), format_func=METHODS.get, horizontal=True, key="embed_method")
    with friendly("draw the embedding map"), st.spinner("Running the starting and the trained model over the data..."):
        weights = store.run_dir(record.id) / WEIGHTS_FILE
        result = _map(record.id, weights.stat().st_mtime, method)
        st.plotly_chart(map_figure(result, escape=plot), key="embedding_map", config={"displayModeBar": False})
        wrong = int((~result.points["correct"]).sum())
        st.caption(f"{len(result.points)} samples; {wrong} misclassified (crosses). Before: the model the run started "
                   "from (pretrained, or the run it continued). Where the classes already form separate clouds before "
                   "training, the pretrained features carry them; where they only separate after, training did the work."
                   + (" Open symbols: the new domain's samples, which adaptation should bring onto the source's."
                      if (result.points["domain"] != "source").any() else ""))
