"""Results: how good a run is, which classes it confuses, and the examples it gets wrong."""
import streamlit as st

from app import charts, embedding_ui, explain_ui, results_ui
from app.evaluate_ui import evaluate_elsewhere
from app.nav import page_file
from app.resources import get_store
from app.state import current_run_id
from app.text import md
from app.threshold_ui import decision_section
from app.ui import fmt_duration, fmt_pct, friendly, pick_run
from transfer_core.csvsafe import csv_bytes
from transfer_core.summary import best_note

store = get_store()
st.title("Results")
runs = results_ui.finished_runs(store)
if not runs:
    st.info("No run has finished yet. Train a model first; a stopped run shows its results too.")
    st.page_link(page_file("3_train"), label="Go to Train", icon=":material/play_circle:")
    st.stop()

record = pick_run(store, runs, key="results_run", default_id=current_run_id(store, attach_active=False))
run_dir = store.run_dir(record.id)
metrics = results_ui.run_metrics(run_dir)
val, summary = metrics.get("val", {}), metrics.get("summary", {})

cols = st.columns(5)
cols[0].metric("Validation accuracy", fmt_pct(val.get("accuracy")))
cols[1].metric("Macro F1", fmt_pct(val.get("macro_f1")), help="The F1 score averaged over classes, so small classes count as much as big ones.")
cols[2].metric("Validation loss", f"{val['loss']:.3f}" if charts.finite(val.get("loss")) else "-")
cols[3].metric("Epochs", summary.get("epochs", record.epochs_done))
cols[4].metric("Training time", fmt_duration(record.best_metrics.get("train_seconds")))
hardware = results_ui.hardware_caption(metrics.get("hardware", {}))
if hardware:
    st.caption(hardware)
if "test_accuracy" in summary:
    st.caption(f"Test set (measured once, at the end): accuracy {fmt_pct(summary['test_accuracy'])}, "
               f"macro F1 {fmt_pct(summary.get('test_macro_f1'))}.")
if "target_accuracy" in summary:
    st.caption(f"New domain (labelled examples, never trained on): accuracy {fmt_pct(summary['target_accuracy'])}, "
               f"macro F1 {fmt_pct(summary.get('target_macro_f1'))}.")
st.caption(f"Measured on {val.get('num_samples', '?')} validation examples the model never trained on. "
           f"Model {md(record.model)}, data {md(record.dataset)}, status {record.status}.")
if best_note(summary):
    st.caption(f"These are the numbers of the model you get; {best_note(summary)}.")

left, right = st.columns([3, 2])
with left:
    normalise = st.toggle("Show shares instead of counts", key="cm_normalise")
    if val.get("confusion_matrix"):
        st.plotly_chart(charts.confusion_matrix(val["confusion_matrix"], val["classes"], normalise),
                        key="confusion", config={"displayModeBar": False})
with right:
    st.markdown("**Per class**")
    st.dataframe(results_ui.per_class_table(val), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="percent") for c in ("precision", "recall", "F1")})
    st.caption("Precision: of the examples predicted as this class, the share that are. "
               "Recall: of this class's examples, the share found.")
    st.download_button("Download per-class scores (CSV)", csv_bytes(results_ui.per_class_table(val)),
                       file_name=f"{record.id}-per-class.csv", mime="text/csv", icon=":material/download:",
                       key="download_per_class")

evaluate_elsewhere(store, record)
embedding_ui.map_section(store, record)
decision_section(store, record.id)

st.subheader("Examples it gets wrong")
preds = results_ui.run_predictions(run_dir)
if preds is None:
    st.info("This run saved no predictions.")
    st.stop()
# Written again rather than sent as saved: a run from before cells were neutralised has raw ones.
st.download_button("Download all predictions (CSV)", csv_bytes(preds),
                   file_name=f"{record.id}-predictions.csv", mime="text/csv", icon=":material/download:",
                   key="download_predictions")
kind = st.radio("Show", ["misclassified", "highest loss"], horizontal=True, key="gallery_kind",
                format_func=lambda k: {"misclassified": "Misclassified (most confident first)",
                                       "highest loss": "Highest loss (hardest examples)"}[k])
k = st.slider("How many", 4, 48, 12, step=4, key="gallery_k")
rows = results_ui.gallery_rows(preds, kind, k)
if rows.empty:
    st.success("No misclassified validation examples.")
else:
    inputs, note = results_ui.sample_inputs(record.config)
    if note:
        st.caption(md(note))
    heat = record.modality == "image" and st.toggle("Show where the model looked (Grad-CAM heatmaps of the "
                                                    "predicted class)", key="gallery_heatmaps")
    with friendly("explain the examples"):
        results_ui.show_gallery(rows, inputs, record.modality,
                                heatmap=explain_ui.gallery_heatmap(record.id) if heat else None)
        if record.modality == "text" and st.toggle("Show the words each prediction rests on", key="gallery_words"):
            explain_ui.text_reasons(record.id, rows, inputs)
