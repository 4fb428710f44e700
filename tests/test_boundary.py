"""The engine never imports streamlit (checked in a fresh interpreter)."""
import subprocess
import sys


def test_engine_does_not_import_streamlit():
    code = ("import importlib, pkgutil, sys, transfer_core\n"
            "for m in pkgutil.walk_packages(transfer_core.__path__, 'transfer_core.'):\n"
            "    if m.name != 'transfer_core.__main__': importlib.import_module(m.name)\n"
            "assert 'streamlit' not in sys.modules, 'streamlit was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
