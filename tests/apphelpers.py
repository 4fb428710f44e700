"""Helpers for the AppTest tests (tests/app, tests/hardening): open the app, check it drew no error, make images."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "router.py")
SHAPES = ("circle", "square", "triangle")


def shape_image(kind: str, seed: int, size: int = 24) -> Image.Image:
    """A light shape on a dark background with a little noise: easy to tell apart, never identical."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    c = size / 2 + rng.uniform(-2, 2, 2)
    r = size / 3
    if kind == "circle":
        mask = (x - c[0]) ** 2 + (y - c[1]) ** 2 < r ** 2
    elif kind == "square":
        mask = (abs(x - c[0]) < r * 0.8) & (abs(y - c[1]) < r * 0.8)
    else:
        mask = (y > c[1] - r) & (abs(x - c[0]) < (y - (c[1] - r)) / 2)
    pixels = mask * 200 + rng.integers(0, 40, (size, size))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def open_app(page: str | None = None, *, session: dict | None = None, timeout: float = 60):
    """An AppTest of the router, optionally switched to pages/<page>.py, with session state preset."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"../pages/{page}.py").run()
    return at


def draft(**settings) -> dict:
    from transfer_core.config import RunConfig

    cfg = RunConfig()
    for key, value in settings.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.to_dict()


def no_exceptions(at) -> None:
    """No uncaught exception reached the page, and no unexpected-error message was drawn."""
    assert not at.exception, [e.value for e in at.exception]
    unexpected = [e.value for e in at.error if "something unexpected went wrong" in e.value]
    assert not unexpected, unexpected


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def train_run(runs_dir: Path, data: str, model: str, **settings) -> str:
    """A finished run made with the engine directly (what a CLI run would leave in the store)."""
    from transfer_core.config import RunConfig
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit

    cfg = RunConfig()
    cfg.set("data.path", data)
    cfg.set("model.name", model)
    for key, value in {"train.epochs": 2, **settings}.items():
        cfg.set(key, value)
    with RunStore(runs_dir) as store:
        result = fit(cfg, store=store, name=f"{model} test run")
    assert result.status == "completed", result.message
    return result.run_id


def run_started(time: float = 0.0, *, epochs: int, steps_per_epoch: int, start_epoch: int = 0):
    """A RunStarted event as the store returns it, for the Train page's progress helpers."""
    from transfer_core.events import RunStarted
    return RunStarted("r", time, epochs=epochs, steps_per_epoch=steps_per_epoch, start_epoch=start_epoch, num_train=8,
                      num_val=2, classes=("a", "b"), device="cpu", trainable_params=10, total_params=10)
