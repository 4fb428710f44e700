"""transfer_core: the headless engine of the transfer-learning app (data, models, freezing, training, runs, export).

It never imports streamlit; the app, the CLI, tests and benchmarks all drive it.
"""
import os

__version__ = "0.1.0"

# onnxruntime (it checks ONNX exports) reports usage to a Microsoft server, on Linux too, some seconds
# after a model is loaded. This engine sends nothing out: turn that off before onnxruntime starts.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
