"""Home: what transfer learning is, what each page does, and one-click demos."""
import streamlit as st

from app.demo import demo_config
from app.learning_path import learning_path
from app.nav import page_file
from app.state import CURRENT_RUN, replace_draft

st.title("Transfer Studio")
st.markdown(
    "**Transfer learning** starts from a model that has already learned general features from millions of "
    "images or texts, and trains only a small part of it on your own classes. "
    "Because most of the knowledge is reused, a few dozen examples per class and a few minutes on an "
    "ordinary computer are often enough. "
    "Here you bring labelled examples, choose a pretrained model and which of its layers stay frozen, "
    "watch it learn, then inspect, try and export the result."
)

left, right = st.columns(2)
for column, modality, label, icon in ((left, "image", "Start with demo images", ":material/image:"),
                                      (right, "text", "Start with demo texts", ":material/article:")):
    with column:
        if st.button(label, type="primary", icon=icon, width="stretch", key=f"demo_{modality}"):
            replace_draft(demo_config(modality))
            st.session_state[CURRENT_RUN] = None
            st.switch_page(page_file("3_train"))
left.caption("Fashion-MNIST clothing photos, 10 classes, EfficientNet-Lite0 with its top 4 layer groups training. "
             "About a minute on a laptop CPU.")
right.caption("BBC News articles, 5 topics, MiniLM sentence encoder with its last layer training. "
              "About a minute on a laptop CPU.")
st.caption("Both demos run offline: the data and the pretrained models are installed with the app. "
           "The demo buttons take you to the Train page; press Start there and watch the loss fall and the "
           "accuracy rise, epoch by epoch.")

learning_path()

st.subheader("The pages")
for name, label, icon in [
    ("1_data", "**Data**: upload images or texts, take webcam photos per class, or pick a demo set; see the classes, "
               "examples and a plain-language data report.", ":material/dataset:"),
    ("2_model", "**Model and layers**: pick a pretrained model and choose which layer groups train and which stay "
                "frozen, with size, memory and time estimates.", ":material/layers:"),
    ("3_train", "**Train**: set the training options, start, and watch loss and accuracy live; pause, resume or stop "
                "at any time.", ":material/play_circle:"),
    ("4_results", "**Results**: accuracy, the confusion matrix, per-class scores and the examples the model gets "
                  "wrong.", ":material/insights:"),
    ("5_try", "**Try and export**: classify a new image or text and download the model as a ready-to-use bundle.",
     ":material/science:"),
    ("6_runs", "**Runs**: every run (also those started from the command line); compare, resume, extend or delete "
               "them.", ":material/history:"),
]:
    st.page_link(page_file(name), label=label, icon=icon)
