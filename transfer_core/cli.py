"""`python -m transfer_core ...`: train, evaluate, predict, export, resume, runs, models, report, probe.

User errors exit with status 2 and one line on stderr naming the problem and the fix.
`train` and `resume` end their stdout with one JSON object describing the run.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
import signal
import sys
from pathlib import Path

from . import launch
from .config import RunConfig, iter_fields
from .errors import DataError, TransferError
from .events import BatchEnded, EpochEnded, Notice, RunStarted
from .launch import add_launch_options
from .lr_find import END_LR as LR_END
from .lr_find import START_LR as LR_START
from .lr_find import STEPS as LR_STEPS
from .probe import PROBE_EPOCHS
from .recipes import RECIPES, get_recipe
from .run_files import default_runs_dir

DEFAULT_RUNS_DIR = str(default_runs_dir())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m transfer_core", description="Transfer learning for image and text classification.")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"where runs are stored (default: {DEFAULT_RUNS_DIR}, or $TRANSFER_CORE_RUNS)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a pretrained model on labelled data")
    add_setting_options(t)
    t.add_argument("--name", help="a name for the run")
    t.add_argument("--config", help="a config.json (e.g. from an earlier run) to start from")
    t.add_argument("--recipe", choices=list(RECIPES), help="a classic recipe's settings, applied before the options "
                   "given here (they win): " + "; ".join(f"{r.name}: {r.title}" for r in RECIPES.values()))
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting, e.g. --set optim.scheduler=onecycle (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_launch_options(t)

    r = sub.add_parser("resume", help="continue a stopped or interrupted run, or extend a finished one")
    r.add_argument("--run", required=True)
    r.add_argument("--epochs", type=int, default=0, help="extra epochs (needed to extend a finished run)")
    r.add_argument("--quiet", action="store_true")
    add_launch_options(r)

    e = sub.add_parser("evaluate", help="score a trained run on labelled data")
    e.add_argument("--run", required=True)
    e.add_argument("--data", required=True)

    pr = sub.add_parser("predict", help="classify images (paths) or texts")
    pr.add_argument("--run", required=True)
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("inputs", nargs="+", help="image paths, or texts")

    x = sub.add_parser("export", help="write a verified export bundle")
    x.add_argument("--run", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--zip", action="store_true", help="also write a .zip of the bundle")

    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--rebuild", action="store_true",
                    help="list again the run folders the run database does not list (a damaged database is kept aside)")
    ls.add_argument("--remove", metavar="RUN", help="remove a run from the list, with its folder if any")

    m = sub.add_parser("models", help="list models")
    m.add_argument("--modality", choices=("image", "text"))
    m.add_argument("--json", action="store_true")

    rep = sub.add_parser("report", help="the data report, without training")
    add_setting_options(rep, sections=("data",))
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ex = sub.add_parser("explain", help="why the run's model predicts what it does: a heatmap over each image "
                                        "(Grad-CAM), a score per word of each text (integrated gradients)")
    ex.add_argument("--run", required=True)
    ex.add_argument("--target-class", help="explain this class instead of the predicted one")
    ex.add_argument("--out", default="explanations", help="folder for the heatmap PNGs and text JSON files "
                                                           "(default: explanations)")
    ex.add_argument("inputs", nargs="+", help="image paths, or texts")
    em = sub.add_parser("embed", help="a map of the validation samples in the space the head reads, before and "
                                      "after training (PCA or t-SNE), as a standalone HTML page")
    em.add_argument("--run", required=True)
    em.add_argument("--data", help="labelled data to map instead of the run's validation split")
    em.add_argument("--method", choices=("pca", "tsne"), default="pca")
    em.add_argument("--out", default="map.html", help="the HTML file to write (default: map.html)")
    cp = sub.add_parser("compare", help="train the same settings four ways (head only, top layers, full "
                                        "fine-tuning, from scratch) on the same split and seed, and compare them")
    add_setting_options(cp)
    cp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cp.add_argument("--recipe", choices=sorted(RECIPES), help="start from a recipe's settings")
    cp.add_argument("--quiet", action="store_true", help="no progress bars")
    lf = sub.add_parser("lr-find", help="a learning-rate range test: the loss as the rate grows, and a suggested rate")
    add_setting_options(lf)
    lf.add_argument("--steps", type=int, default=LR_STEPS, help=f"steps of the test (default {LR_STEPS})")
    lf.add_argument("--start-lr", type=float, default=LR_START, help=f"the first step's rate (default {LR_START:g})")
    lf.add_argument("--end-lr", type=float, default=LR_END, help=f"the last step's rate (default {LR_END:g})")
    lf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    lf.add_argument("--quiet", action="store_true", help="no notes on stderr")
    th = sub.add_parser("threshold", help="a two-class run's decision threshold: show it, or set it from a threshold "
                                          "or a recall to reach on the validation data")
    th.add_argument("--run", required=True)
    th.add_argument("--positive", help="the class to find (default: the saved one, else the rarer class)")
    chosen = th.add_mutually_exclusive_group()
    chosen.add_argument("--threshold", type=float, help="say the class to find from this probability on")
    chosen.add_argument("--recall", type=float, help="the highest threshold that finds at least this share of it")
    chosen.add_argument("--clear", action="store_true", help="back to the most probable class (0.5)")
    pb = sub.add_parser("probe", help="which layer transfers best: a linear head on each layer group's output")
    add_setting_options(pb, sections=("data", "model"))
    pb.add_argument("--epochs", type=int, default=PROBE_EPOCHS, help=f"at most this many passes (L-BFGS iterations) of each layer's logistic regression over the training features (default {PROBE_EPOCHS})")
    pb.add_argument("--seed", type=int, default=0, help="random seed of the split and the heads (default 0)")
    pb.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    pb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pb.add_argument("--quiet", action="store_true", help="no progress lines")
    for command in sub.choices.values():   # also after the command (`runs --runs-dir X`); the last one given wins
        command.add_argument("--runs-dir", default=argparse.SUPPRESS, help="as --runs-dir before the command")
    return p


# Short names for the settings people change most; every setting also has its --section.name option.
ALIASES = {"data.path": "--data", "data.val_path": "--val", "data.test_path": "--test", "model.name": "--model", "freeze.preset": "--freeze",
           "train.epochs": "--epochs", "optim.lr": "--lr", "train.batch_size": "--batch-size",
           "model.image_size": "--image-size", "model.max_length": "--max-length", "train.seed": "--seed",
           "adapt.target": "--target", "adapt.target_val": "--target-val", "adapt.method": "--adapt",
           "model.feature_layer": "--feature-layer", "train.class_balance": "--class-balance"}
SETTING = "setting:"   # argparse dest prefix of the options made from the config


def add_setting_options(parser: argparse.ArgumentParser, sections: tuple[str, ...] | None = None) -> None:
    """One option per setting of the typed config (--train.epochs, with --epochs for the common ones), with
    its help, range and choices: a new setting gets its flag here and its form field in the app, from the
    same declaration. Values are checked by RunConfig.set, as --set and config files are."""
    group = parser.add_argument_group("settings (any of them also as --set section.name=VALUE)")
    for dotted, f, default in iter_fields(RunConfig()):
        if sections is not None and dotted.split(".")[0] not in sections:
            continue
        meta = f.metadata
        facts = [f"{k} {meta[k]}" for k in ("min", "max") if meta.get(k) is not None] + [f"default {default!r}"]
        text = f"{meta.get('help', '')} ({', '.join(facts)})"
        names = [f"--{dotted}"] + ([ALIASES[dotted]] if dotted in ALIASES else [])
        group.add_argument(*names, dest=SETTING + dotted, default=argparse.SUPPRESS, choices=meta.get("choices"),
                           metavar=None if meta.get("choices") else _metavar(default), help=text.replace("%", "%%"))


def _metavar(default) -> str:
    return {bool: "true|false", int: "N", float: "X", list: "A,B"}.get(type(default), "TEXT")


def given_settings(args) -> dict[str, str]:
    """{dotted name: value} of the setting options on the command line."""
    return {k[len(SETTING):]: v for k, v in vars(args).items() if k.startswith(SETTING)}


def explicit_settings(args) -> set[str]:
    """The settings the user gave (a flag, --set, or a key in --config's file); defaults fill in the rest."""
    given = set()
    if getattr(args, "config", None) and Path(args.config).is_file():
        try:
            data = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except ValueError:
            data = {}   # config_from_args reports the broken file
        if isinstance(data, dict):
            given |= {f"{section}.{key}" for section, values in data.items() if isinstance(values, dict) for key in values}
    if getattr(args, "recipe", None):
        given |= set(get_recipe(args.recipe).settings)
    given |= set(given_settings(args))
    given |= {item.split("=", 1)[0].strip() for item in getattr(args, "set", []) if "=" in item}
    return given


def config_from_args(args) -> RunConfig:
    cfg = RunConfig()
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise TransferError(f"no config file at {path}; give the path of a config.json")
        cfg = RunConfig.from_json(path.read_text(encoding="utf-8"))
    if getattr(args, "recipe", None):
        get_recipe(args.recipe).apply(cfg)
    for key, value in given_settings(args).items():
        cfg.set(key, value)
    for item in args.set:
        if "=" not in item:
            raise TransferError(f"--set {item} needs the form key=value, e.g. --set optim.lr=0.001")
        key, value = item.split("=", 1)
        cfg.set(key.strip(), value.strip())
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv   # (a distributed launch starts each process with them)
    try:
        return COMMANDS[args.command](args)
    except TransferError as exc:
        # Some fixes read differently here (a command) than in the app (a button).
        print(f"error: {getattr(exc, 'cli_text', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def to_json(obj) -> str:
    """One line of strict JSON: NaN and infinities become null. json.dumps writes them as bare NaN/Infinity,
    which JSON parsers (jq, JavaScript, most languages) refuse; a NaN metric or probability means "no number"."""
    return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, default=str)


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


# ---- commands ---------------------------------------------------------------
def _config_with_data(args, missing: str) -> RunConfig:
    """The command's settings, with its data required (`missing` says what is lacking) and the default model
    for that data's kind when none was given."""
    from .models import default_model
    from .preparation import guess_modality
    cfg = config_from_args(args)
    if not cfg.data.path:
        raise TransferError(f"{missing}; give --data PATH (a folder, .zip, CSV/TSV/JSONL or demo:bbc-news)")
    if "model.name" not in explicit_settings(args):
        cfg.model.name = default_model(guess_modality(cfg.data.path)).name
    return cfg


def _store(args):
    from .store import RunStore
    return RunStore(args.runs_dir)


def cmd_train(args) -> int:
    from .trainer import check_startable
    cfg = _config_with_data(args, "no training data")
    _choose_rates(cfg, args)
    check_startable(cfg, runs_dir=args.runs_dir)
    if launch.wanted(args):
        _check_launch(args, cfg)
        store = _store(args)
        run_id = args.run_id   # (a run the web app created)
        if run_id is None and args.node_rank == 0:   # (rank 0, which writes the run, is on machine 0)
            run_id = store.create_run(cfg.to_dict(), name=args.name, modality="", model=cfg.model.name,
                                      dataset=cfg.data.path)
        return launch.launch(args, args.argv, store, run_id)
    return _run_fit(args, cfg, run_id=args.run_id, resume=False, extra=0, name=args.name)


def _check_launch(args, cfg: RunConfig) -> None:
    from .devices import pick_device
    problem = launch.check_options(args, pick_device(cfg.train.device).type)
    if problem is None and cfg is not None and cfg.adapt.method != "none":
        problem = "domain adaptation trains on one process for now; leave out --devices or --adapt"
    if problem:
        raise TransferError(problem)


def _choose_rates(cfg: RunConfig, args) -> None:
    """Learning rates the user did not give follow the preset and the model (as in the app); a rate
    that looks out of range for them is kept, with a warning."""
    from .freezing import apply_recommended_rates, body_lr, rate_warnings, trains_body
    from .models import get_spec
    cfg.check()   # an invalid setting is reported as such, before any rate is derived from it
    spec = get_spec(cfg.model.name, runs_dir=args.runs_dir)
    chosen = apply_recommended_rates(cfg, spec, keep=explicit_settings(args))
    if chosen and trains_body(cfg.freeze) and not args.quiet:
        print(f"note: learning rates for {cfg.freeze.preset} on {spec.name}: new head {cfg.optim.lr:g}, "
              f"pretrained layers {body_lr(cfg):g} (--lr and --set freeze.body_lr_factor=X change them)", file=sys.stderr)
    for warning in rate_warnings(cfg, spec):
        print(f"warning: {warning}", file=sys.stderr)


def cmd_resume(args) -> int:
    from .trainer import check_resumable
    store = _store(args)
    if not launch.is_rank_zero():   # one of a distributed run's other processes: rank 0 reads the store
        return _run_fit(args, None, run_id=args.run, resume=True, extra=args.epochs, store=store)
    # Refused before anything is written, so a mistaken command leaves the run as it was.
    record = check_resumable(store, args.run, args.epochs)
    if launch.wanted(args):
        _check_launch(args, RunConfig.of_saved_run(record.config))
        return launch.launch(args, args.argv, store, record.id)
    return _run_fit(args, None, run_id=record.id, resume=True, extra=args.epochs, store=store)


def _run_fit(args, cfg, *, run_id, resume, extra, name=None, store=None) -> int:
    from .control import RunControl
    from .trainer import fit
    store = store or _store(args)
    control = RunControl()
    # First Ctrl-C stops gracefully (checkpoint written); a second one aborts.
    def on_interrupt(*_) -> None:
        control.request_stop()
        signal.signal(signal.SIGINT, previous)
    previous = signal.signal(signal.SIGINT, on_interrupt)
    speaks = launch.is_rank_zero()   # (the other processes of a distributed run say nothing)
    observers = [ProgressBar()] if speaks and not args.quiet else []
    result = fit(cfg, store=store, run_id=run_id, control=control, observers=observers, resume=resume,
                 extra_epochs=extra, name=name, allowed_roots=args.allowed_root)
    store.flush()
    for obs in observers:
        obs.close()
    if result.status == "failed":
        message = result.message.strip()
        print(f"error: {message.rstrip('.')}; {result.advice}" if result.advice else f"error: {message}", file=sys.stderr)
        if speaks:
            print(to_json(result.summary()))
        return 1
    if not speaks:
        return 0
    if not args.quiet:
        from .runs import run_coach_notes
        for note in run_coach_notes(store, result.run_id):
            print(f"coach: {note.message} What to try: {note.advice}", file=sys.stderr)
    print(to_json(result.summary()))
    return 0


def cmd_evaluate(args) -> int:
    from .runs import evaluate_run
    print(to_json(evaluate_run(_store(args), args.run, args.data)))
    return 0


def cmd_predict(args) -> int:
    from .runs import predict_run
    if args.top_k < 1:
        raise TransferError(f"--top-k must be 1 or more, not {args.top_k}; e.g. --top-k 3")
    for row in predict_run(_store(args), args.run, args.inputs, top_k=args.top_k):
        print(to_json(row))
    return 0


def cmd_export(args) -> int:
    from .export import zip_bundle
    from .runs import export_run
    result = export_run(_store(args), args.run, args.out)
    out = {"path": str(result.path), "formats": result.formats, "parity": result.parity}
    if args.zip:
        out["zip"] = str(zip_bundle(result.path))
    print(to_json(out))
    return 0


def cmd_runs(args) -> int:
    if args.rebuild:
        from .store import rebuild_run_list
        rebuilt = rebuild_run_list(args.runs_dir)
        if rebuilt.kept:
            print(f"the damaged run database was kept as {rebuilt.kept}", file=sys.stderr)
        for name, reason in rebuilt.skipped:
            print(f"warning: run folder {name} could not be read ({reason}); it is left as it is", file=sys.stderr)
        print(f"{len(rebuilt.added)} run(s) listed again", file=sys.stderr)
    store = _store(args)
    if args.remove:
        record = store.get_run(args.remove)
        store.delete_run(record.id)
        print(f"removed run {record.id}", file=sys.stderr)
        return 0
    store.reconcile_interrupted()
    runs = store.list_runs()
    if args.json:
        print(to_json([r.to_dict() for r in runs]))
        return 0
    print(f"{'id':24} {'status':12} {'model':22} {'val acc':>8} {'epochs':>6}  data")
    for r in runs:
        acc = (r.best_metrics or {}).get("val_accuracy")
        # "-" where a run has no accuracy (it failed before its first epoch ended)
        shown = f"{acc:.3f}" if isinstance(acc, (int, float)) and math.isfinite(acc) else "-"
        print(f"{r.id:24} {r.status:12} {r.model[:22]:22} {shown:>8} {r.epochs_done or 0:>6}  {r.dataset}")
    return 0


def cmd_models(args) -> int:
    from .models import list_specs
    from .models.network import availability
    specs = list_specs(args.modality)
    ready = {s.name: availability(s) for s in specs}
    if args.json:
        print(to_json([{"name": s.name, "modality": s.modality, "source": s.source, "offline": s.offline,
                        "availability": ready[s.name], "params": s.num_params, "description": s.description}
                       for s in specs]))
        return 0
    words = {"ready": "ready", "download": "downloads weights", "unreachable": "cannot download now"}
    for s in specs:
        print(f"{s.name:28} {s.modality:6} {words[ready[s.name]]:19} {s.description}")
    print("Also: any Hugging Face image/text classification hub id, a local Hugging Face folder, or run:<run id>.")
    return 0


def cmd_report(args) -> int:
    from .preparation import prepare_data
    cfg = config_from_args(args)
    if not cfg.data.path:
        raise TransferError("no data; give --data PATH (a folder, .zip, CSV/TSV/JSONL or demo:bbc-news)")
    try:
        prepared = prepare_data(cfg)
    except DataError as exc:
        # The report is what this command is for: print what was found, then the refusal.
        if getattr(exc, "report", None) is None:
            raise
        print(to_json(exc.report.to_dict()))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_json(prepared.report.to_dict()))
    return 0


def cmd_explain(args) -> int:
    from .runs import explain_run
    for row in explain_run(_store(args), args.run, args.inputs, target=args.target_class, out_dir=args.out):
        print(to_json(row))
    return 0


def cmd_embed(args) -> int:
    from .embedding import embedding_map, write_map
    result = embedding_map(_store(args), args.run, data_path=args.data, method=args.method)
    path = write_map(result, args.out)
    points = result.points
    print(to_json({"run_id": result.run_id, "method": result.method, "file": str(path), "points": len(points),
                   "misclassified": int((~points["correct"]).sum()),
                   "domains": sorted(points["domain"].unique().tolist())}))
    return 0


def cmd_compare(args) -> int:
    from .run_files import METRICS_FILE
    from .strategies import strategy_configs
    from .trainer import check_startable, fit
    cfg = _config_with_data(args, "no training data")
    _choose_rates(cfg, args)
    store = _store(args)
    planned = [(s, check_startable(c, runs_dir=args.runs_dir)) for s, c in strategy_configs(cfg, runs_dir=args.runs_dir)]
    rows = []
    for strategy, config in planned:   # (all four are checked before the first trains)
        bar = None if args.quiet else ProgressBar()
        result = fit(config, store=store, name=f"{strategy.title} · compared", observers=[bar] if bar else [])
        if bar:
            bar.close()
        metrics_path = store.run_dir(result.run_id) / METRICS_FILE
        parameters = json.loads(metrics_path.read_text()).get("parameters", {}) if metrics_path.exists() else {}
        rows.append({"strategy": strategy.name, "run_id": result.run_id, "status": result.status,
                     "val_accuracy": result.metrics.get("val_accuracy"), "val_macro_f1": result.metrics.get("val_macro_f1"),
                     "train_seconds": round(result.train_seconds, 2), "trainable_params": parameters.get("trainable"),
                     "total_params": parameters.get("total"), "message": result.message})
    print(f"{'strategy':<13} {'status':<10} {'val_accuracy':>12} {'val_macro_f1':>12} {'seconds':>8} {'trainable':>12}")
    def cell(x) -> str:
        return "-" if x is None else f"{x:.3f}"
    for row in rows:
        print(f"{row['strategy']:<13} {row['status']:<10} {cell(row['val_accuracy']):>12} {cell(row['val_macro_f1']):>12} "
              f"{row['train_seconds']:>8} {row['trainable_params'] or '-':>12}")
    print(to_json({"runs": rows}))
    return 0 if all(row["status"] == "completed" for row in rows) else 1


def cmd_lr_find(args) -> int:
    from .lr_find import lr_find
    cfg = _config_with_data(args, "no data to test with")
    _choose_rates(cfg, args)   # the per-group rates a run with these options would train with
    result = lr_find(cfg.check(), runs_dir=Path(args.runs_dir), start_lr=args.start_lr, end_lr=args.end_lr,
                     steps=args.steps)
    print(f"{'learning_rate':>13}  {'loss':>8}  {'smoothed':>8}")
    every = max(1, len(result.lrs) // 20)
    for i in range(0, len(result.lrs), every):
        print(f"{result.lrs[i]:>13.3g}  {result.losses[i]:>8.4f}  {result.smoothed[i]:>8.4f}")
    print(f"suggested learning rate: {result.suggested_lr:.3g}" if result.suggested_lr else
          "no suggestion: the loss never fell", file=sys.stderr)
    print(to_json({"model": result.model, "suggested_lr": result.suggested_lr, "steepest_lr": result.steepest_lr,
                   "stopped_by_divergence": result.stopped_by_divergence,
                   "points": [[lr, loss, smooth] for lr, loss, smooth in zip(result.lrs, result.losses, result.smoothed)]}))
    return 0


def cmd_threshold(args) -> int:
    from .runs import clear_threshold, decision_summary, set_threshold, validation_scores
    store = _store(args)
    if args.clear:
        print(to_json(clear_threshold(store, args.run)))
    elif args.threshold is not None or args.recall is not None:
        print(to_json(set_threshold(store, args.run, positive=args.positive, threshold=args.threshold,
                                    recall=args.recall)))
    else:
        print(to_json(decision_summary(store, args.run, validation_scores(store, args.run, args.positive))))
    return 0


def cmd_probe(args) -> int:
    from .probe import probe
    cfg = _config_with_data(args, "no data to probe with")
    cfg.set("train.seed", args.seed)
    cfg.set("train.device", args.device)
    say = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    result = probe(cfg, cache_root=Path(args.runs_dir), epochs=args.epochs, notify=say)
    width = max(len(s.layer) for s in result.layers)
    print(f"{'layer':<{width}}  features  val_accuracy  val_macro_f1")
    for s in result.layers:
        mark = "  <- best" if s.layer == result.best_layer else ""
        print(f"{s.layer:<{width}}  {s.features:>8}  {s.val_accuracy:>12.3f}  {s.val_macro_f1:>12.3f}{mark}")
    print(to_json(result.to_dict()))
    return 0


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "runs": cmd_runs, "models": cmd_models, "report": cmd_report,
            "probe": cmd_probe, "threshold": cmd_threshold, "lr-find": cmd_lr_find,
            "compare": cmd_compare, "explain": cmd_explain, "embed": cmd_embed}


class ProgressBar:
    """A tqdm bar on stderr fed by fit() events."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm
        if isinstance(event, RunStarted):
            if self.bar is not None:   # started again (an out-of-memory retry with smaller batches)
                self.bar.close()
            total = event.epochs * event.steps_per_epoch
            self.bar = tqdm(total=total, initial=event.start_epoch * event.steps_per_epoch, unit="step",
                            file=sys.stderr, dynamic_ncols=True, desc=f"run {event.run_id}")
            tqdm.write(f"{event.num_train} training / {event.num_val} validation samples, {len(event.classes)} classes, "
                       f"{event.trainable_params:,} of {event.total_params:,} parameters train on {event.device}", file=sys.stderr)
        elif isinstance(event, BatchEnded) and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=event.epoch + 1, loss=f"{event.loss:.3f}", sps=f"{event.samples_per_second:.0f}")
        elif isinstance(event, EpochEnded):
            tqdm.write(f"epoch {event.epoch + 1}: train loss {event.train_loss:.4f} acc {event.train_accuracy:.3f} | "
                       f"val loss {event.val_loss:.4f} acc {event.val_accuracy:.3f} macro-F1 {event.val_macro_f1:.3f}", file=sys.stderr)
        elif isinstance(event, Notice):
            tqdm.write(f"note: {event.message}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
