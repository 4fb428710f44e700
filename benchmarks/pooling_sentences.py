"""Typed one-sentence inputs after the BBC News text demo, per model.pooling.

Trains the demo's run (all-MiniLM-L6-v2, head only, 50 articles per class, 10 epochs) once per
pooling, then asks each model about ten short sentences of the kind people type on the Try page.

    python benchmarks/pooling_sentences.py [--poolings cls mean]

Prints one row per pooling: validation accuracy (on held-out articles), how many typed sentences
get the right topic first, and the top three for the first sentence. See README (Models).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCES = {
    "The striker scored twice in the second half as the home side won the league title on Saturday.": "sports",
    "The coach said the team needs to defend better before the cup final.": "sports",
    "The prime minister faces a vote in parliament on the new tax plans next week.": "politics",
    "Voters will choose a new mayor in the election next month.": "politics",
    "Shares in the bank fell sharply after it warned that profits would be lower this year.": "business",
    "Oil prices rose as demand from factories in Asia picked up.": "business",
    "The new smartphone has a faster chip and a camera that works better in low light.": "tech",
    "Hackers stole millions of passwords from the online service.": "tech",
    "The actress won an award for her role in the film at the ceremony in London.": "entertainment",
    "The band's new album went straight to number one in the charts.": "entertainment",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poolings", nargs="+", default=["cls", "mean"], choices=["auto", "cls", "mean", "pooler"])
    args = parser.parse_args()
    from transfer_core.config import RunConfig
    from transfer_core.runs import predict_run
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit

    store = RunStore(Path(tempfile.mkdtemp(prefix="pooling-")))
    texts = list(SENTENCES)
    print("| pooling | val accuracy | typed sentences right | first sentence: top 3 |")
    print("|---|---|---|---|")
    for pooling in args.poolings:
        cfg = RunConfig()
        cfg.data.path, cfg.model.name = "demo:bbc-news?per_class=50", "minilm_l6"
        cfg.train.epochs, cfg.optim.lr, cfg.model.pooling = 10, 3e-3, pooling
        result = fit(cfg.check(), store=store)
        if result.status != "completed":
            raise SystemExit(f"the {pooling} run ended {result.status}: {result.message}")
        answers = predict_run(store, result.run_id, texts, top_k=3)
        right = sum(a["top"][0]["label"] == SENTENCES[t] for a, t in zip(answers, texts))
        top3 = ", ".join(f"{x['label']} {100 * x['probability']:.0f} %" for x in answers[0]["top"])
        print(f"| {pooling} | {result.metrics['val_accuracy']:.3f} | {right}/{len(texts)} | {top3} |", flush=True)


if __name__ == "__main__":
    main()
