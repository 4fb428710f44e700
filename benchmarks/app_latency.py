"""How fast the web app answers while a model trains: simultaneous page loads and page reruns.

    .venv/bin/python benchmarks/app_latency.py                 # starts its own server and job
    .venv/bin/python benchmarks/app_latency.py --sessions 20 --reruns 10 --no-baseline
    .venv/bin/python benchmarks/app_latency.py --url "http://127.0.0.1:8501/?token=..."   # a running app (needs --data-dir)

`--url` takes the address the app prints when it starts (with its access token, app/access.py).
Without --url it starts `streamlit run streamlit_app.py` on a free loopback port with temporary runs
and data folders, measures once with nothing training (baseline), then starts a full fine-tuning job
through the app's own Start button, measures again while it trains, stops the job and the server.

Each "load" is what a browser does when it opens the Train page: GET / (index.html), open the
websocket /_stcore/stream, ask for a script run (a BackMsg `rerun_script`, as the frontend sends it)
and read ForwardMsgs until `script_finished`. A "rerun" is the same session asking for the page
again (what every click does); a "live refresh" is the Train page's live-view fragment rerun that
the browser requests every second while a run is active. Target: a rerun under 0.5 s while a job trains.

The Session class is a minimal Streamlit client (Streamlit's protobufs over the `websockets`
package that Streamlit itself depends on); tests/e2e/test_e2e_concurrent.py reuses it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import secrets
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
ACTIVE = ("queued", "running", "paused")
BADGE = re.compile(r"-badge\[(\w+)\]")
FINISHED_OK, FINISHED_COMPILE_ERROR, FINISHED_EARLY, FINISHED_FRAGMENT = 0, 1, 2, 3


# ---------------------------------------------------------------------------------------------- client
def sign_in(address: str) -> tuple[str, dict[str, str]]:
    """The app's base URL and the headers a browser sends once it has opened `address` (the address the
    app prints, http://HOST:PORT/?token=...): the access cookie the server sets for that token."""
    from app.access import Access

    parts = urlsplit(address)
    base = f"{parts.scheme}://{parts.netloc}"
    token = parse_qs(parts.query).get("token", [""])[0]
    if not token:
        return base, {}
    access = Access(token)
    return base, {"Cookie": f"{access.cookie_name}={access.cookie_value}"}


@dataclass
class Page:
    """What one script run sent: its elements (Element protos) and how long it took."""
    seconds: float
    elements: list = field(default_factory=list)
    status: int = FINISHED_OK

    def texts(self) -> list[str]:
        out = []
        for el in self.elements:
            kind = el.WhichOneof("type")
            sub = getattr(el, kind) if kind else None
            for attr in ("body", "text", "label"):
                value = getattr(sub, attr, None)
                if isinstance(value, str) and value:
                    out.append(value)
        return out

    def has_text(self, needle: str) -> bool:
        return any(needle in t for t in self.texts())

    def button(self, label: str):
        """The Button proto with this label (None when the page has none)."""
        for el in self.elements:
            if el.WhichOneof("type") == "button" and el.button.label == label:
                return el.button
        return None

    def statuses(self) -> list[str]:
        """Run status badges on the page, e.g. ["running"]."""
        return [m.group(1) for t in self.texts() for m in BADGE.finditer(t)]


class Session:
    """One browser-like session of a Streamlit app: `await s.run("train")` runs the Train page."""

    def __init__(self, url: str, timeout: float = 120.0):
        self.url, self.headers = sign_in(url)
        self.timeout = timeout
        self.ws = None
        self.page_hash = ""
        self.query = ""
        self.fragment_ids: list[str] = []

    async def __aenter__(self) -> "Session":
        import websockets

        ws_url = "ws" + self.url[len("http"):] + "/_stcore/stream"
        # Same origin as the page, as a browser sends it; "streamlit" is the subprotocol the frontend asks for.
        self.ws = await asyncio.wait_for(websockets.connect(ws_url, subprotocols=["streamlit"], origin=self.url,
                                                            additional_headers=self.headers, max_size=None,
                                                            compression=None), self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def run(self, page: str | None = None, *, query: str | None = None, click=None,
                  texts: dict[str, str] | None = None, fragment_id: str = "") -> Page:
        """Ask for a script run and wait for it to finish: `page` by URL path (None: the current page),
        optionally pressing `click` (a Button proto) with text inputs set ({widget id: text})."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query if query is None else query
        if page is not None:
            state.page_name = page
        else:
            state.page_script_hash = self.page_hash
        if click is not None:
            widget = state.widget_states.widgets.add()
            widget.id = click.id
            widget.trigger_value = True
        for widget_id, text in (texts or {}).items():
            widget = state.widget_states.widgets.add()
            widget.id = widget_id
            widget.string_value = text
        if fragment_id:
            state.fragment_id = fragment_id
            state.is_auto_rerun = True
            state.page_script_hash = self.page_hash
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        await self.ws.send(msg.SerializeToString())
        result = Page(0.0)
        while True:
            data = await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.monotonic()))
            fwd = ForwardMsg()
            fwd.ParseFromString(data)
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = fwd.new_session.page_script_hash or self.page_hash
                result.elements.clear()       # a new script run (after st.rerun or a page switch)
            elif kind == "navigation":        # st.navigation names the page that ran (also after a switch)
                self.page_hash = fwd.navigation.page_script_hash or self.page_hash
            elif kind == "page_info_changed":
                self.query = fwd.page_info_changed.query_string
            elif kind == "auto_rerun":
                if fwd.auto_rerun.fragment_id not in self.fragment_ids:
                    self.fragment_ids.append(fwd.auto_rerun.fragment_id)
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                result.elements.append(fwd.delta.new_element)
            elif kind == "script_finished":
                status = fwd.script_finished
                if status == FINISHED_EARLY:
                    continue                  # st.rerun()/st.switch_page(): the next run follows by itself
                if fragment_id and status != FINISHED_FRAGMENT:
                    continue
                result.status = status
                result.seconds = time.perf_counter() - started
                return result


def _get(address: str, timeout: float) -> int:
    """GET the app's index page as a browser that has opened `address` does."""
    base, headers = sign_in(address)
    with urllib.request.urlopen(urllib.request.Request(base + "/", headers=headers), timeout=timeout) as r:
        r.read()
        return r.status


async def load_once(url: str, page: str = "train", timeout: float = 120.0) -> dict:
    """What a browser does to open a page: GET / then a websocket session that runs the page once."""
    out = {"ok": False, "index": None, "script": None, "total": None, "error": ""}
    t0 = time.perf_counter()
    try:
        status = await asyncio.wait_for(asyncio.to_thread(_get, url, timeout), timeout)
        t1 = time.perf_counter()
        out["index"] = t1 - t0
        async with Session(url, timeout) as s:
            result = await s.run(page)
        t2 = time.perf_counter()
        out.update(script=t2 - t1, total=t2 - t0, ok=status == 200 and result.status == FINISHED_OK
                   and bool(result.elements))
        if not out["ok"]:
            out["error"] = f"HTTP {status}, script status {result.status}, {len(result.elements)} elements"
    except Exception as exc:  # a load that failed is counted, not raised
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def simultaneous_loads(url: str, n: int = 20, page: str = "train", timeout: float = 120.0) -> list[dict]:
    return list(await asyncio.gather(*(load_once(url, page, timeout) for _ in range(n))))


async def rerun_times(url: str, n: int = 10, page: str = "train", timeout: float = 120.0,
                      pause: float = 0.2) -> tuple[list[float], list[float]]:
    """One session: `n` full reruns of the page, then `n` live-view (fragment) reruns when the page has one."""
    full, fragment = [], []
    async with Session(url, timeout) as s:
        await s.run(page)
        for _ in range(n):
            await asyncio.sleep(pause)
            full.append((await s.run()).seconds)
        for _ in range(n if s.fragment_ids else 0):
            await asyncio.sleep(pause)
            fragment.append((await s.run(fragment_id=s.fragment_ids[0])).seconds)
    return full, fragment


# ---------------------------------------------------------------------------------------------- jobs
async def start_training(url: str, run_name: str = "latency benchmark", timeout: float = 300.0) -> Page:
    """Type a run name and press the Train page's Start button (the new session's draft comes from
    <data>/last_config.json, see draft_for_new_sessions)."""
    async with Session(url, timeout) as s:
        page = await s.run("train")
        button = page.button("Start training")
        if button is None or button.disabled:
            raise RuntimeError(f"the Train page offers no enabled Start button: {page.texts()[:8]}")
        names = [el.text_input.id for el in page.elements if el.WhichOneof("type") == "text_input"
                 and el.text_input.label == "Run name (optional)"]
        return await s.run(click=button, texts=dict.fromkeys(names, run_name))


async def wait_until_training(url: str, query: str = "", timeout: float = 600.0) -> Page:
    """Poll the Train page until the run it shows is running and has trained at least one step."""
    deadline = time.monotonic() + timeout
    async with Session(url, 120) as s:
        page = await s.run("train", query=query)
        while True:
            progress = [el.progress.text for el in page.elements if el.WhichOneof("type") == "progress"]
            if "running" in page.statuses() and any(re.search(r"step [1-9]", p) for p in progress):
                return page
            if not set(page.statuses()) & set(ACTIVE):
                raise RuntimeError(f"the run is not active: {page.statuses()} {progress}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no training step after {timeout:.0f} s: {page.statuses()} {progress}")
            await asyncio.sleep(1.0)
            page = await s.run()


async def stop_active_runs(url: str, timeout: float = 300.0, limit: int = 20) -> int:
    """Stop every queued, running or paused run of the app, one at a time, through the Stop button.
    A fresh session's Train page follows the newest active run; returns how many were stopped."""
    stopped = 0
    for _ in range(limit):
        async with Session(url, 120) as s:
            page = await s.run("train")
            button = page.button("Stop")
            if button is None:
                return stopped
            page = await s.run(click=button)
            deadline = time.monotonic() + timeout
            while set(page.statuses()) & set(ACTIVE):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"a run did not stop within {timeout:.0f} s")
                await asyncio.sleep(1.0)
                page = await s.run()
            stopped += 1
    return stopped


def long_job_config(epochs: int = 200) -> dict:
    """The image demo with every layer training: slow steps, so the job is still training while we measure."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from app.demo import demo_config

    cfg = demo_config("image")
    cfg.set("freeze.preset", "full")
    cfg.set("train.epochs", epochs)
    return cfg.to_dict()


@contextmanager
def draft_for_new_sessions(data_dir: Path, config: dict):
    """New sessions start from <data>/last_config.json; put `config` there, restore what was there after."""
    path = Path(data_dir) / "last_config.json"
    before = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


# ---------------------------------------------------------------------------------------------- measuring
def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]
    return {"n": len(values), "median": statistics.median(values), "p95": p95, "max": ordered[-1]}


async def measure(url: str, *, sessions: int = 20, reruns: int = 10, page: str = "train",
                  timeout: float = 120.0) -> dict:
    """One round: `sessions` simultaneous loads, then `reruns` reruns and live refreshes of one session."""
    loads = await simultaneous_loads(url, sessions, page, timeout)
    full, fragment = await rerun_times(url, reruns, page, timeout)
    ok = [r for r in loads if r["ok"]]
    return {"loads": loads, "served": len(ok), "sessions": sessions,
            "index": summary([r["index"] for r in ok]), "script": summary([r["script"] for r in ok]),
            "total": summary([r["total"] for r in ok]), "rerun": summary(full), "fragment": summary(fragment)}


def table(rounds: dict[str, dict]) -> str:
    def ms(x):
        return "-" if x is None else f"{1000 * x:7.0f}"
    lines = [f"{'phase':10} {'what':46} {'n':>4} {'served':>7} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}"]
    for phase, r in rounds.items():
        n = r["sessions"]
        for key, what in (("index", f"{n} simultaneous loads: GET index.html"),
                          ("script", f"{n} simultaneous loads: websocket + page run"),
                          ("total", f"{n} simultaneous loads: total"),
                          ("rerun", "page rerun (one session, Train page)"),
                          ("fragment", "live-view refresh (fragment rerun)")):
            s = r[key]
            served = f"{r['served']}/{n}" if key in ("index", "script", "total") else ""
            lines.append(f"{phase:10} {what:46} {s['n']:>4} {served:>7} {ms(s['median']):>10} {ms(s['p95']):>8} "
                         f"{ms(s['max']):>8}")
    return "\n".join(lines)


async def measure_while_training(url: str, data_dir: Path, *, sessions: int = 20, reruns: int = 10,
                                 baseline: bool = True, epochs: int = 200, timeout: float = 120.0,
                                 log=print) -> dict[str, dict]:
    """Baseline round (optional), start a long job through the app, a round while it trains, stop it."""
    rounds: dict[str, dict] = {}
    config = long_job_config(epochs)
    first = await load_once(url, timeout=timeout)          # the first run imports torch & co.: not a fair sample
    log(f"first page load after the server started: {first['total'] or 0:.1f} s {first['error']}")
    if baseline:
        log("measuring with nothing training...")
        with draft_for_new_sessions(data_dir, config):      # the same Train page form, just no live view
            rounds["idle"] = await measure(url, sessions=sessions, reruns=reruns, timeout=timeout)
    log("starting a full fine-tuning job through the Train page...")
    try:
        with draft_for_new_sessions(data_dir, config):
            await start_training(url)
        page = await wait_until_training(url)
        log("training: " + " · ".join(el.progress.text for el in page.elements if el.WhichOneof("type") == "progress"))
        rounds["training"] = await measure(url, sessions=sessions, reruns=reruns, timeout=timeout)
        page = await wait_until_training(url, timeout=30)       # it is still training after the round
    finally:
        log(f"stopped {await stop_active_runs(url)} run(s)")
    return rounds


# ---------------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(base: Path, cache: str | None = None, ready_timeout: float = 120.0, env: dict | None = None):
    """`streamlit run streamlit_app.py` on a free loopback port with runs and data under `base`; yields the
    address to open, with the access token it chose (http://127.0.0.1:PORT/?token=...)."""
    port = _free_port()
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "TRANSFER_CORE_RUNS": str(base / "runs"), "TRANSFER_APP_DATA": str(base / "data"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "TRANSFER_STUDIO_TOKEN": token, **(env or {})}
    env.pop("TRANSFER_STUDIO_NO_TOKEN", None)
    if cache:
        env["TRANSFER_CORE_CACHE"] = cache
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{(base / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield f"{url}/?token={token}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20, help="simultaneous page loads (default 20)")
    ap.add_argument("--reruns", type=int, default=10, help="page reruns and live refreshes timed (default 10)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the round with nothing training")
    ap.add_argument("--epochs", type=int, default=200, help="epochs of the job (it is stopped after measuring)")
    ap.add_argument("--url", help="a running app instead of a new server (with --data-dir: its TRANSFER_APP_DATA)")
    ap.add_argument("--data-dir", help="the running app's data folder (where last_config.json lives)")
    ap.add_argument("--cache", help="TRANSFER_CORE_CACHE for the new server (default: the usual cache)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    def run(url: str, data_dir: Path) -> dict:
        return asyncio.run(measure_while_training(url, data_dir, sessions=args.sessions, reruns=args.reruns,
                                                  baseline=not args.no_baseline, epochs=args.epochs))

    started = time.monotonic()
    if args.url:
        if not args.data_dir:
            ap.error("--url needs --data-dir (the app's TRANSFER_APP_DATA folder)")
        url, rounds = args.url, run(args.url, Path(args.data_dir))
    else:
        base = Path(tempfile.mkdtemp(prefix="app_latency_"))
        try:
            with app_server(base, args.cache) as url:
                print(f"server: {url} (runs and data in {base})")
                rounds = run(url, base / "data")
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"Transfer Studio page latency at {url}; {os.cpu_count()} CPU core(s); "
          f"job: image demo, full fine-tuning; {time.monotonic() - started:.0f} s in all")
    print(table(rounds))
    failures = [r["error"] for phase in rounds.values() for r in phase["loads"] if not r["ok"]]
    for error in dict.fromkeys(failures):
        print("failed load:", error)
    training = rounds.get("training", {}).get("rerun", {})
    if training.get("median") is not None:
        verdict = "meets" if training["median"] < 0.5 else "misses"
        print(f"page rerun while training: median {1000 * training['median']:.0f} ms ({verdict} the 500 ms target)")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1, default=str), encoding="utf-8")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
