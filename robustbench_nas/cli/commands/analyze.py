"""``rbnas analyze STORE --out DIR``: proxy ranking, prediction, architecture analysis, search, HTML report."""

from __future__ import annotations

import click

from ..common import check_output_dir, echo_json, fail, force_option, space_option


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@click.command(name="analyze")
@click.argument("store_path", type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--sections", default="all", show_default=True,
              help="Comma-separated parts to run: ranking, prediction, architecture, search (and any registered).")
@click.option("--targets", default=None, help="Ranking targets (comma-separated; default: all), e.g. clean,adv_mean.")
@click.option("--predict-targets", default=None,
              help="Prediction / search targets (default: clean, pgd@Linf@1/255 or the first attack, adv_mean).")
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples for Spearman intervals.")
@click.option("--n-boot-kendall", default=200, show_default=True, help="Bootstrap resamples for Kendall intervals.")
@click.option("--min-clean", default="auto", show_default=True,
              help="Leave cells with a lower clean accuracy out of the 'best' lists and rank them as a second subset "
                   "(collapsed / badly trained cells); 'auto': 80 % of the best cell's clean accuracy; 0: no filter.")
@click.option("--clean-threshold", default=None, type=float, hidden=True, help="Old name of --min-clean.")
@click.option("--topk", default=0.1, show_default=True, help="Fraction for top-k precision.")
@click.option("--model", "--models", "model", default="auto", show_default=True,
              help="Regressor of the prediction section, as rbnas predict --model: auto (chosen by 5-fold CV inside "
                   "the training cells) or a registered model (rf, et, gbm, ridge, gp, ...).")
@click.option("--train-sizes", default="100", show_default=True,
              help="Training cells (comma-separated), as rbnas predict --train-size; e.g. 100,1000 for a learning "
                   "curve (1000 under --model auto is slow: an inner CV of 800-cell models per split).")
@click.option("--repeats", default=5, show_default=True, help="Random splits per training size (as rbnas predict).")
@click.option("--train-select", type=click.Choice(["random", "kmeans", "variance"]), default="random",
              show_default=True, help="How training cells are chosen (as rbnas predict --train-select).")
@click.option("--selection", type=click.Choice(["1se", "best"]), default="1se", show_default=True,
              help="How --model auto picks a candidate (as rbnas predict --selection).")
@click.option("--trees", default=100, show_default=True,
              help="Trees of the random forest behind the permutation importance.")
@click.option("--encodings", default="all", show_default=True,
              help="Architecture encodings the prediction section predicts from, as rbnas predict --encodings: "
                   "the space's names (nb201: onehot, opcount, path, graf, pathstats, propagation, graf_exact; "
                   "nats-sss: channels, onehot, width), 'default' (nb201: opcount,graf; nats-sss: channels,width), "
                   "'all', or 'none'.")
@click.option("--rank-encodings", default="default", show_default=True,
              help="Architecture encodings ranked in the summary's one ranking beside costs, proxies and measures "
                   "(names as --encodings; 'all' ranks every one-hot / path column: much slower on big stores).")
@space_option(default=None)
@click.option("--search-budget", default=300, show_default=True, help="Queries per search run (0: skip search).")
@click.option("--search-repeats", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--proxies", "proxy_table", default=None,
              help="Proxy study: join a proxy table onto the store by uid ('shipped' = the packaged NB201 CIFAR-10 "
                   "table, or a CSV with arch_str, uid, proxy columns).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@force_option(help="Empty and replace an --out folder that holds anything (otherwise an error).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (default: a few lines of text).")
def command(store_path: str, out_dir: str, sections: str, targets: str | None, predict_targets: str | None,
            n_boot: int, n_boot_kendall: int, min_clean: str, clean_threshold: float | None, topk: float, model: str,
            train_sizes: str, repeats: int, train_select: str, selection: str, trees: int, encodings: str,
            rank_encodings: str, space_name: str | None, search_budget: int,
            search_repeats: int, seed: int, proxy_table: str | None, progress: bool, force: bool,
            as_json: bool) -> None:  # fmt: skip
    """Analyse STORE (a pipeline run or an imported dataset) and write tables, figures and OUT/report.html."""
    from robustbench_nas.analysis.predict_protocol import PredictProtocol
    from robustbench_nas.analysis.prediction import list_models
    from robustbench_nas.analysis.ranking import RankingConfig
    from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
    from robustbench_nas.analysis.targets import load_store
    from robustbench_nas.storage import StoreError

    from robustbench_nas.analysis.report import list_sections

    secs = None if sections.strip() == "all" else tuple(_csv(sections) or [])
    bad = [s for s in secs or () if s not in list_sections()]
    if bad:
        fail(f"unknown section(s) {bad}; choose from {', '.join(list_sections())} (or all)")
    model = model.strip()
    if model != "auto" and model not in list_models():
        fail(f"--model {model!r}: not a model; known: auto, {', '.join(list_models())}")
    try:
        sizes = tuple(int(s) for s in _csv(train_sizes) or [])
    except ValueError:
        fail(f"--train-sizes must be integers, got {train_sizes!r}")
    if clean_threshold is not None:
        min_clean = str(clean_threshold)
    try:
        min_clean_v = None if min_clean.strip().lower() == "auto" else float(min_clean)
    except ValueError:
        fail(f"--min-clean must be a number in [0, 1] or 'auto', got {min_clean!r}")
    if min_clean_v is not None and not 0 <= min_clean_v <= 1:
        fail(f"--min-clean must be in [0, 1] (accuracies are fractions), got {min_clean_v}")
    if trees < 1:
        fail(f"--trees must be a positive integer, got {trees}")
    if repeats < 1:
        fail(f"--repeats must be a positive integer, got {repeats}")
    enc, rank_enc = (None if e.strip().lower() == "none" else _csv(e) for e in (encodings, rank_encodings))
    enc, rank_enc = (["all"] if e and "all" in e else e for e in (enc, rank_enc))
    cfg = AnalysisConfig(
        ranking=RankingConfig(n_boot=n_boot, n_boot_kendall=n_boot_kendall, topk=topk, seed=seed),
        rank_targets=_csv(targets),
        prediction=PredictProtocol(model=model, train_sizes=sizes, repeats=repeats, seed=seed,
                                   train_select=train_select, selection=selection),
        importance_trees=trees,
        min_clean=min_clean_v,
        predict_targets=_csv(predict_targets),
        encodings=enc,
        rank_encodings=rank_enc,
        search_budget=search_budget,
        search_repeats=search_repeats,
        seed=seed,
        sections=secs + ("proxy_study",) if proxy_table and secs is not None and "proxy_study" not in secs else secs,
        proxies=proxy_table,
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
    check_output_dir(out_dir, force, marker="report.html", keep=(store_path,))  # after every other check
    try:
        summary = run_analysis(ds, out_dir, cfg, progress=progress)
    except (KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    result = {"out": out_dir, "report": f"{out_dir}/report.html", "cells": summary["cells"],
              "findings": summary.get("findings"), "warnings": summary.get("warnings"),
              "ranking_best": summary.get("ranking_best"), "best": summary.get("best"),
              "seconds": summary["seconds"]}  # fmt: skip
    if as_json:
        echo_json(result)
        return
    secs = result["seconds"]
    total = sum(secs.values()) if isinstance(secs, dict) else float(secs)  # per-section seconds
    click.echo(f"report: {result['report']}  ({result['cells']} cells, {total:.0f} s)")
    for w in result["warnings"] or []:
        click.echo(f"warning: {w}")
    for f in (result["findings"] or [])[:5]:
        click.echo(f"- {f}")
    more = len(result["findings"] or []) - 5
    if more > 0:
        click.echo(f"  (+{more} more findings in the report; --json for all)")
