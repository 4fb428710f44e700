"""The Try page's "Why?": where in the image the evidence for a class lies (a Grad-CAM heatmap) or which words
push towards it (integrated gradients), for the predicted class or any other (transfer_core/explain.py)."""
from __future__ import annotations

import streamlit as st

from transfer_core.explain import INTEGRATED_GRADIENTS, Explanation, explain, overlay

from .resources import get_store
from .results_ui import WEIGHTS_FILE, run_model
from .text import md
from .ui import friendly

STRONG, WEAK = 0.5, 0.15      # shares of the largest score from which a word is marked (strongly)
READING = {"image": "red where the evidence for the class lies, blue where there is none.",
           "text": "green words push towards the class, red words away from it; the stronger, the bolder."}


def why(run_id: str, item, predicted: str, classes: list[str], modality: str) -> None:
    if not st.toggle("Why? Show what the prediction rests on", key="why_on"):
        return
    target = st.selectbox("Explain the class", classes, index=classes.index(predicted), key=f"why_class_{run_id}")
    with friendly("explain the prediction"), st.spinner("Tracing the prediction back to the input..."):
        found = explain(run_model(run_id), item, target)
        if found.image is not None:
            seen, heat = st.columns(2)
            seen.image(found.image, caption="What the model sees", width=260)
            heat.image(overlay(found), caption=f"Evidence for {md(target)} ({found.target_probability:.0%})", width=260)
            if found.map_size == (1, 1):
                st.info("At this image size the model's last feature maps are 1 x 1 pixel, so the heatmap cannot point "
                        "anywhere; a larger image size (Model page) gives it a grid to point on.", icon=":material/grid_off:")
            elif found.heatmap is not None and float(found.heatmap.max()) == 0:
                st.info(f"No region of the image raises the score of {md(target)}: the heatmap is empty.",
                        icon=":material/visibility_off:")
        else:
            st.markdown(highlighted(found))
            st.caption(f"Scores for {md(target)} ({found.target_probability:.0%}).")
        st.caption(f"{found.method}: {READING[modality]}")


@st.cache_data(show_spinner=False, max_entries=256)
def _gallery_overlay(run_id: str, weights_mtime: float, path: str):
    # (the weights' time: a run trained further is explained again)
    return overlay(explain(run_model(run_id), path))


def gallery_heatmap(run_id: str):
    """path -> the image with the heatmap of its predicted class over it, for the Results page's gallery."""
    mtime = (get_store().run_dir(run_id) / WEIGHTS_FILE).stat().st_mtime
    return lambda path: _gallery_overlay(run_id, mtime, path)


def text_reasons(run_id: str, rows, inputs: dict[str, str]) -> None:
    """Under the Results page's table of texts: each text with the words its prediction rests on."""
    built = run_model(run_id)
    for row in rows.to_dict("records"):
        text = inputs.get(row["id"])
        if not text:
            continue
        found = explain(built, text)
        st.markdown(f"true **{md(row['true'])}** · predicted **{md(row['predicted'])}** "
                    f"({row['confidence']:.0%}): {highlighted(found)}")
    st.caption(f"{INTEGRATED_GRADIENTS}: {READING['text']}")


def words(tokens: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Word pieces joined into words ("play", "##ing" -> "playing"; a sentencepiece "▁" starts a word), each
    with the sum of its pieces' scores."""
    out: list[tuple[str, float]] = []
    for token, score in tokens:
        if token.startswith("##") and out:
            out[-1] = (out[-1][0] + token[2:], out[-1][1] + score)
        elif token.startswith("▁") or not out or not token.startswith("##"):
            out.append((token.lstrip("▁"), score))
    return out


def highlighted(found: Explanation) -> str:
    """The text as Markdown, each word marked by its score: green for the class, red against it."""
    joined = words(found.tokens or [])
    top = max((abs(s) for _, s in joined), default=0.0) or 1.0
    parts = []
    for word, score in joined:
        share, text = score / top, md(word)
        if abs(share) < WEAK or not text:
            parts.append(text)
            continue
        colour = "green" if share > 0 else "red"
        text = f"**{text}**" if abs(share) >= STRONG else text
        parts.append(f":{colour}-background[{text}]")
    return " ".join(parts)
