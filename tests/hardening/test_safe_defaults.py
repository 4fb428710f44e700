"""Safe defaults, one named test each: loopback bind, XSRF/CORS/host checks, upload cap, no tracebacks in
the browser, uploads under the data folder with generated names, typed paths confined to the allowed
roots, no remote code, only weights_only loads, and export bundles without pickled code. Fast, no browser."""
from __future__ import annotations

import ast
import json
import os
import pickletools
import re
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "router.py")
CONFIG = ROOT / ".streamlit" / "config.toml"
SOURCES = sorted((ROOT / "transfer_core").rglob("*.py")) + sorted((ROOT / "app").rglob("*.py")) \
    + sorted((ROOT / "pages").rglob("*.py")) + [ROOT / "streamlit_app.py"]
OUTSIDE = "is outside the folders this app may read"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def effective_options(tmp_path_factory) -> dict:
    """The options Streamlit itself reads from .streamlit/config.toml (a fresh interpreter, no ~/.streamlit)."""
    home = tmp_path_factory.mktemp("home")
    names = ["server.address", "server.enableXsrfProtection", "server.enableCORS", "server.allowedHosts",
             "server.maxUploadSize", "server.enableStaticServing", "client.showErrorDetails",
             "browser.gatherUsageStats"]
    code = ("import json, sys\nfrom streamlit import config\nconfig.get_config_options(force_reparse=True)\n"
            f"print(json.dumps({{n: config.get_option(n) for n in {names!r}}}))\n")
    env = {**os.environ, "HOME": str(home)}
    env = {k: v for k, v in env.items() if not k.startswith("STREAMLIT_")}   # no overrides from the shell
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def app_dirs(app_env, monkeypatch):
    """The shared AppTest setup (tests/conftest.py) without its extra allowed roots: the app may read
    only its own runs and data folders."""
    monkeypatch.delenv("TRANSFER_APP_EXTRA_ROOTS")
    return app_env


def open_app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(f"../pages/{page}.py").run()
    return at


def draft_of(at):
    from transfer_core.config import RunConfig
    return RunConfig.from_dict(at.session_state["draft_config"])


def tiny_hf_folder(folder: Path) -> Path:
    """A small BERT text classifier saved with save_pretrained (safetensors weights, a tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from transfer_core.models.offline import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


# ------------------------------------------------------------------------------------------ server settings
def test_server_binds_loopback_unless_the_user_chooses_an_address(effective_options):
    toml = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert toml["server"]["address"] == "127.0.0.1"
    assert effective_options["server.address"] == "127.0.0.1"
    # The README's launch script pins loopback too, before the user's own arguments (the last one given wins).
    script = (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")
    launch = next(line for line in script.splitlines() if "streamlit run" in line)
    assert re.search(r'--server\.address 127\.0\.0\.1 "\$@"$', launch.strip()), launch
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/demo.sh" in readme


def test_xsrf_cors_and_host_checks_are_on(effective_options):
    assert effective_options["server.enableXsrfProtection"] is True
    # Since Streamlit 1.67 enableCORS=false means "any origin may connect": it must stay true.
    assert effective_options["server.enableCORS"] is True
    hosts = effective_options["server.allowedHosts"]
    assert hosts and set(hosts) <= {"localhost", "127.0.0.1", "::1", "[::1]"}, hosts
    assert effective_options["server.enableStaticServing"] is False


def test_uploads_are_capped_in_size(effective_options):
    cap = effective_options["server.maxUploadSize"]
    assert 0 < cap <= 1024, f"server.maxUploadSize is {cap} MB"
    assert cap < 200 * 1024  # far below Streamlit's 200 GB hard ceiling: the cap is a real limit


def test_browser_gets_no_tracebacks_and_nothing_is_sent_out(effective_options):
    assert effective_options["client.showErrorDetails"] == "none"
    assert effective_options["browser.gatherUsageStats"] is False


# ------------------------------------------------------------------------------------------ uploads and paths
def test_uploaded_files_land_under_the_data_dir_with_generated_names(app_dirs):
    import io

    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label in ("cat", "dog"):
            for i in range(6):
                img = io.BytesIO()
                Image.new("RGB", (12, 12), (40 * i, 200 if label == "cat" else 0, 90)).save(img, format="PNG")
                zf.writestr(f"{label}/{i}.png", img.getvalue())
    uploads = (app_dirs / "data" / "uploads").resolve()
    rows = "text,label\n" + "\n".join(f"sample text number {i},{'a' if i % 2 else 'b'}" for i in range(20))
    for source, key, name, payload, kind in (
            ("Images (.zip)", "upload_zip", "../../evil.zip", buf.getvalue(), "zip"),
            ("Text file", "upload_text", "/etc/passwd.csv", rows.encode(), "text")):
        at = open_app("1_data")
        at.radio(key="data_source").set_value(source).run()
        at.file_uploader(key=key).set_value((name, payload, "application/octet-stream")).run()
        assert not at.exception, [e.value for e in at.exception]
        saved = Path(draft_of(at).data.path)
        assert saved.is_file() and saved.read_bytes() == payload
        assert saved.resolve().is_relative_to(uploads), saved
        # <data>/uploads/<kind>-<12 random hex digits>/<the file's own name, cleaned of any path>
        assert re.fullmatch(rf"{kind}-[0-9a-f]{{12}}", saved.parent.name), saved
        assert saved.parent.parent.resolve() == uploads
        assert saved.name == Path(name).name and "/" not in saved.name and ".." not in saved.name
    assert not (app_dirs / "evil.zip").exists() and not (app_dirs.parent / "evil.zip").exists()


def test_a_typed_model_path_outside_the_allowed_roots_is_refused(app_dirs):
    outside = tiny_hf_folder(app_dirs / "elsewhere" / "tiny-bert")      # a real model, but outside the roots
    inside = tiny_hf_folder(app_dirs / "data" / "models" / "tiny-bert")
    at = open_app("2_model")
    before = draft_of(at).model.name
    for typed in (str(outside), "/etc", "~", str(app_dirs / "data" / ".." / "elsewhere" / "tiny-bert")):
        at.text_input(key="other_model").set_value(typed).run()
        at.button(key="use_other_model").click().run()
        assert not at.exception, [e.value for e in at.exception]
        errors = [e.value for e in at.error if OUTSIDE in e.value]
        assert len(errors) == 1 and "\n" not in errors[0], [e.value for e in at.error]
        assert draft_of(at).model.name == before
    at.text_input(key="other_model").set_value(str(inside)).run()
    at.button(key="use_other_model").click().run()
    assert not [e.value for e in at.error if OUTSIDE in e.value]
    assert draft_of(at).model.name == str(inside)


def test_engine_confines_paths_to_the_allowed_roots(tmp_path):
    from transfer_core.config import RunConfig
    from transfer_core.errors import DataError, ModelError
    from transfer_core.jobs import JobManager
    from transfer_core.models import get_spec
    from transfer_core.paths import check_allowed, is_within
    from transfer_core.store import RunStore

    data, runs, outside = tmp_path / "data", tmp_path / "runs", tmp_path / "outside"
    for folder in (data, runs, outside / "cats", outside / "dogs"):
        folder.mkdir(parents=True)
    (data / "link").symlink_to(outside, target_is_directory=True)    # a link inside that points outside
    roots = [runs, data]
    assert is_within(data / "x" / "y.zip", roots) and is_within(runs, roots)
    for path in (outside, data / ".." / "outside", data / "link", data / "link" / "cats", Path("/etc/passwd")):
        with pytest.raises(DataError, match=OUTSIDE):
            check_allowed(path, roots, what="data.path")
    model = tiny_hf_folder(outside / "model")
    assert get_spec(str(model)).modality == "text"              # the command line reads any folder
    with pytest.raises(ModelError, match=OUTSIDE):
        get_spec(str(model), allowed_roots=roots)
    assert get_spec("efficientnet_lite0", allowed_roots=roots).name == "efficientnet_lite0"
    with pytest.raises(ModelError):
        get_spec("run:../../etc", runs_dir=runs, allowed_roots=roots)

    store = RunStore(runs)
    jobs = JobManager(store, allowed_roots=roots)
    try:
        cfg = RunConfig()
        cfg.set("model.name", "tiny_cnn")
        for field_name, value, error in (("data.path", str(outside), DataError),
                                         ("data.val_path", str(data / "link"), DataError),
                                         ("model.name", str(model), ModelError)):
            bad = cfg.copy()
            bad.set("data.path", "demo:fashion-mnist?per_class=5")
            bad.set(field_name, value)
            with pytest.raises(error, match=OUTSIDE):
                jobs.submit(bad)
        assert store.list_runs() == []                          # refused before anything was written
    finally:
        jobs.shutdown()
        store.close()


# ------------------------------------------------------------------------------------------ code never runs
def test_no_remote_code_is_ever_trusted(tmp_path, monkeypatch):
    # 1. No source passes trust_remote_code anything but False.
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"trust_remote_code\s*=\s*(True|[^F\s,)])", text), path
        for call, name in _calls(path):
            value = _keyword(call, "trust_remote_code")
            if value is not None:
                assert isinstance(value, ast.Constant) and value.value is False, (path, ast.unparse(call))
    # 2. A real load passes trust_remote_code=False (or leaves transformers' default, False).
    import transformers

    folder = tiny_hf_folder(tmp_path / "tiny")
    seen: list[tuple[str, dict]] = []
    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs))
            return _original(*args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", spy)
    from transfer_core.models import build_model

    built = build_model(str(folder), ["a", "b"], pretrained=True, max_length=16)
    assert built.classes == ["a", "b"]
    assert {name for name, _ in seen} >= {"AutoConfig", "AutoTokenizer", "AutoModelForSequenceClassification"}
    assert all(kwargs.get("trust_remote_code", False) is False for _, kwargs in seen), seen
    # 3. A model folder that ships its own code is refused, and its code never runs.
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "code_ran"
    (evil / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                        "from transformers import PretrainedConfig\n"
                                        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    (evil / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil_model.EvilConfig",
                     "AutoModelForSequenceClassification": "evil_model.EvilModel"}}))
    from transfer_core.errors import ModelError
    from transfer_core.models import get_spec

    with pytest.raises(ModelError, match="trust_remote_code"):
        get_spec(str(evil))
    assert not marker.exists(), "the model folder's own Python code ran"


def test_only_weights_only_torch_loads():
    # Every torch unpickling in the engine and the app uses the weights-only loader (tensors, never code).
    loaders = ("torch.load", "load_state_dict_from_url", "get_state_dict")
    found = 0
    for path in SOURCES:
        for call, name in _calls(path):
            if name.endswith(loaders):
                found += 1
                value = _keyword(call, "weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, (path, ast.unparse(call))
            if name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load") \
                    or name.endswith(("pickle.load", "pickle.loads")):
                pytest.fail(f"{path}: {ast.unparse(call)} unpickles arbitrary objects")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                value = _keyword(call, "allow_pickle")
                assert value is None or (isinstance(value, ast.Constant) and value.value is False), (path, ast.unparse(call))
            if name.endswith("from_pretrained"):
                value = _keyword(call, "weights_only")     # transformers loads .bin files weights_only by default
                assert value is None or (isinstance(value, ast.Constant) and value.value is True), (path, ast.unparse(call))
    assert found >= 2, "the scan found no torch loads at all; is it looking at the right files?"


def test_torchvision_weights_load_weights_only(monkeypatch):
    """torch.hub's load_state_dict_from_url defaults to weights_only=False; the engine overrides it."""
    import torchvision.models._api as tv_api

    from transfer_core.models import torchvision_models

    seen = {}

    def fake_load(url, *args, **kwargs):
        seen.update(kwargs, url=url)
        return {}
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", fake_load)
    monkeypatch.setattr(torchvision_models, "reachable", lambda host: True)
    assert torchvision_models._download_state("resnet18") == {}
    assert seen["weights_only"] is True and seen["check_hash"] is True


# Globals a TorchScript archive's records may name: classes compiled from its own code/ folder (__torch__.*)
# and the tensor/container rebuilders of TorchScript's C++ unpickler. Never a Python callable such as os.system.
TORCHSCRIPT_GLOBALS = re.compile(r"^(__torch__(\.\w+)* \w+|torch \w+Storage|torch\._utils _rebuild_\w+|"
                                 r"torch\.jit\._pickle \w+|collections OrderedDict)$")


def _pickle_globals(data: bytes) -> set[str]:
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            names.add(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(" ".join(strings[-2:]))
    return names


def test_exported_bundles_carry_no_pickled_code(tmp_path):
    import torch

    from transfer_core.export import export_bundle
    from transfer_core.models import build_model

    torch.manual_seed(0)
    image = export_bundle(build_model("tiny_cnn", ["cat", "dog"], pretrained=False, image_size=16), tmp_path / "image")
    text = export_bundle(build_model(str(tiny_hf_folder(tmp_path / "bert")), ["a", "b"], pretrained=True,
                                     max_length=16), tmp_path / "text")
    assert "torchscript" in image.formats and "hf" in text.formats
    torchscript = 0
    for bundle in (image.path, text.path):
        for path in (p for p in bundle.rglob("*") if p.is_file()):
            head = path.read_bytes()[:4]
            assert path.suffix not in {".pkl", ".pickle", ".bin", ".pth", ".ckpt", ".joblib", ".npy"}, path
            assert head[:1] != b"\x80", f"{path} is a Python pickle"
            if not zipfile.is_zipfile(path):
                continue
            # The one zip in a bundle is TorchScript (torch.jit.save), never a torch.save pickle archive.
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                assert any("/code/__torch__/" in n for n in names), f"{path} is a torch.save archive"
                for name in (n for n in names if n.endswith((".pkl", "debug_pkl"))):
                    bad = {g for g in _pickle_globals(zf.read(name)) if not TORCHSCRIPT_GLOBALS.match(g)}
                    assert not bad, f"{path}:{name} names Python callables {bad}"
            with pytest.raises(RuntimeError, match="TorchScript"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.load(path, weights_only=True)     # not a pickle torch's safe loader would take
            torch.jit.load(str(path))                    # TorchScript's own loader reads it
            torchscript += 1
    assert torchscript == 1
    hf_files = {p.name for p in (text.path / "hf_model").iterdir()}
    assert "model.safetensors" in hf_files and not hf_files & {"pytorch_model.bin", "training_args.bin"}, hf_files
