"""``rbnas analyze STORE --out DIR``: proxy ranking, prediction, architecture analysis, search, HTML report."""

from __future__ import annotations

import click

from ..common import echo_json, fail, space_option


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@click.command(name="analyze")
@click.argument("store_path", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--sections", default="ranking,prediction,architecture,search", show_default=True,
              help="Comma-separated parts to run.")
@click.option("--targets", default=None, help="Ranking targets (comma-separated; default: all), e.g. clean,adv_mean.")
@click.option("--predict-targets", default=None,
              help="Prediction / search targets (default: clean, pgd@Linf@1/255 or the first attack, adv_mean).")
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples for Spearman intervals.")
@click.option("--n-boot-kendall", default=200, show_default=True, help="Bootstrap resamples for Kendall intervals.")
@click.option("--clean-threshold", default=0.8, show_default=True, help="Clean accuracy of the second subset.")
@click.option("--topk", default=0.1, show_default=True, help="Fraction for top-k precision.")
@click.option("--models", default="rf", show_default=True, help="Regressors: rf, gbm, et, ridge (comma-separated).")
@click.option("--train-sizes", default="100,1000", show_default=True, help="Training cells (comma-separated).")
@click.option("--repeats", default=2, show_default=True, help="Random splits per training size.")
@click.option("--encodings", default="default", show_default=True,
              help="Architecture encodings as features: the space's names (nb201: onehot, opcount, path, graf; "
                   "nats-sss: channels, onehot, width), 'default' (nb201: opcount,graf; nats-sss: channels,width), "
                   "'all', or 'none'.")
@space_option(default=None)
@click.option("--search-budget", default=300, show_default=True, help="Queries per search run (0: skip search).")
@click.option("--search-repeats", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(store_path: str, out_dir: str, sections: str, targets: str | None, predict_targets: str | None,
            n_boot: int, n_boot_kendall: int, clean_threshold: float, topk: float, models: str, train_sizes: str,
            repeats: int, encodings: str, space_name: str | None, search_budget: int, search_repeats: int, seed: int,
            progress: bool) -> None:  # fmt: skip
    """Analyse STORE (a pipeline run or an imported dataset) and write tables, figures and OUT/report.html."""
    from robustbench_nas.analysis.prediction import PredictionConfig, list_models
    from robustbench_nas.analysis.ranking import RankingConfig
    from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
    from robustbench_nas.analysis.targets import load_store
    from robustbench_nas.storage import StoreError

    secs = tuple(_csv(sections) or [])
    bad = [s for s in secs if s not in ("ranking", "prediction", "architecture", "search")]
    if bad:
        fail(f"unknown section(s) {bad}; choose from ranking, prediction, architecture, search")
    mods = tuple(_csv(models) or ["rf"])
    if [m for m in mods if m not in list_models()]:
        fail(f"unknown model(s) in {mods}; known: {list_models()}")
    try:
        sizes = tuple(int(s) for s in _csv(train_sizes) or [])
    except ValueError:
        fail(f"--train-sizes must be integers, got {train_sizes!r}")
    enc = None if encodings.strip().lower() == "none" else _csv(encodings)
    if enc and "all" in enc:
        enc = ["all"]  # type: ignore[list-item]
    cfg = AnalysisConfig(
        ranking=RankingConfig(n_boot=n_boot, n_boot_kendall=n_boot_kendall, topk=topk,
                              clean_threshold=clean_threshold, seed=seed),
        rank_targets=_csv(targets),
        prediction=PredictionConfig(models=mods, train_sizes=sizes, repeats=repeats, seed=seed),
        predict_targets=_csv(predict_targets),
        encodings=enc,
        search_budget=search_budget,
        search_repeats=search_repeats,
        seed=seed,
        sections=secs,
    )  # fmt: skip
    try:
        ds = load_store(store_path)
    except (StoreError, FileNotFoundError) as e:
        fail(str(e))
    from robustbench_nas.analysis.targets import store_space
    from robustbench_nas.search_spaces import canonical_name

    try:
        if space_name is not None and canonical_name(space_name) != store_space(ds):
            fail(f"--space {space_name}: {store_path} holds the {store_space(ds)} search space")
    except KeyError as e:
        fail(str(e.args[0]))
    try:
        summary = run_analysis(ds, out_dir, cfg, progress=progress)
    except (KeyError, ValueError) as e:
        fail(str(e))
    echo_json({"out": out_dir, "report": f"{out_dir}/report.html", "cells": summary["cells"],
               "ranking_best": summary.get("ranking_best"), "best": summary.get("best"),
               "seconds": summary["seconds"]})  # fmt: skip
