"""transfer_core: the headless engine of the transfer-learning app (data, models, freezing, training, runs, export).

It never imports streamlit; the app, the CLI, tests and benchmarks all drive it.
"""
__version__ = "0.1.0"
