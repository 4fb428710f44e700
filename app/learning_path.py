"""The Home page's learning path for a classroom: five short steps with the demo data, each a question, what to
do and what to look for, ending on the page where the student tries it."""
from __future__ import annotations

import streamlit as st

from .nav import page_file

STEPS = (
    ("What are pretrained features?", "2_model",
     "Pick **Start with demo images**, then open **Which layer transfers best?** on the Model page and measure "
     "each layer. A straight line (a linear head) on each layer's features already separates most clothes: the "
     "network learned general features from millions of photos. Which layer works best, the last or one in the "
     "middle?"),
    ("What does freezing do, and what does it cost?", "3_train",
     "On the Train page, open **Compare strategies** and train all four: the head only, the top layers, "
     "everything, and the same network from random weights. On the Runs page compare their accuracy, their "
     "training time and how many parameters each trained. What did the pretrained weights bring?"),
    ("Why keep validation data apart?", "4_results",
     "The Results page measures the model on examples it never trained on. Train for many epochs with a high "
     "learning rate and watch the coach beside the curves: when the validation loss rises while the training "
     "loss falls, the model memorises instead of learning. What does early stopping change?"),
    ("What does the model look at?", "5_try",
     "On the Try page, upload a photo and turn on **Why?**: the heatmap shows where the evidence for the class "
     "lies. Pick another class and compare. On the Results page, turn on the heatmaps of the examples it gets "
     "wrong: is it right for the right reason?"),
    ("What does a new domain do?", "1_data",
     "On the Data page, pick the **Digits** demo and **Use the shifted digits as the new domain** (inverted, "
     "rotated, noisy). Train once with adaptation *none*, once with *dann*: the green line on the live chart is "
     "the accuracy on the new domain. Why does a model that is excellent on its own data fail there?"),
)


def learning_path() -> None:
    st.subheader("A learning path for a class")
    st.caption("Five short steps with the demo data, about ten minutes each on a laptop.")
    for number, (question, page, what) in enumerate(STEPS, start=1):
        with st.expander(f"{number}. {question}"):
            st.markdown(what)
            st.page_link(page_file(page), label="Try it", icon=":material/arrow_forward:")
