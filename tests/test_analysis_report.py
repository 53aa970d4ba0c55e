"""The ``rbnas analyze`` report: structure (findings first, contents, one figure per section, no JSON dump, no
duplicates), honest statistics (best = largest |rho| with its sign, sample-size warnings, --min-clean) and an
offline render in a headless browser."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from robustbench_nas.analysis.encodings import arch_costs
from robustbench_nas.analysis.ranking import RankingConfig, best_per_target
from robustbench_nas.analysis.report import AnalysisConfig, run_analysis, sort_targets
from robustbench_nas.analysis.targets import load_store
from robustbench_nas.cli.main import cli
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.storage import DONE, StoreSpec, create_store


def _store(path: Path, n: int, seed: int = 0, collapsed: int = 0) -> Path:
    """Clean ~ #conv3x3; PGD@1/255 = -proxy 'anti' (a perfect but negative predictor); proxy 'params' duplicates
    the computed parameter count; ``collapsed`` cells at chance with the highest PGD@8/255."""
    space = get_search_space("nb201")
    uids = space.sample(n, seed=seed)
    rng = np.random.default_rng(seed)
    n3 = np.array([space.cell(u).ops.count("nor_conv_3x3") for u in uids], dtype=float)
    clean = 0.6 + 0.05 * n3 + 0.01 * rng.normal(size=n)
    anti = rng.normal(size=n)
    pgd = np.clip(0.3 - 0.1 * anti, 0, 1)
    pgd8 = pgd / 10
    clean[:collapsed], pgd8[:collapsed] = 0.1, 0.5  # a chance-level cell must not be the "best cell"
    eps = [0.1 / 255, 1 / 255, 2 / 255, 8 / 255]
    spec = StoreSpec(
        archs=uids, arch_str=[space.arch_str(u) for u in uids], seeds=[0], attacks={"pgd@Linf": eps},
        corruptions=["fog"], proxies=["params", "anti"], stages=["clean", "adversarial", "corruptions", "proxies"],
        shard_cells=n,
    )  # fmt: skip
    store = create_store(path, spec)
    store.write_array("clean_accuracy", clean[:, None])
    adv = np.full((n, 1, 1, len(eps)), np.nan)
    order = spec.eps_values()
    for e, v in zip(eps, (pgd + 0.2, pgd, pgd / 2, pgd8)):
        adv[:, 0, 0, order.index(e)] = v
    store.write_array("adv_accuracy", adv)
    store.write_array("corruption_accuracy", np.repeat(clean[:, None, None, None] - 0.1, 5, axis=3))
    params = arch_costs([space.arch_str(u) for u in uids])["params"].to_numpy() / 1e6
    store.write_array("proxy_value", np.stack([params, anti], axis=1)[:, None, :])
    for stage in ("clean", "adversarial", "corruptions", "proxies"):
        store.set_status(stage, DONE)
    return path


class _Doc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])
        self._in_h2 = tag == "h2"
        if tag == "h2":
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def _cfg(**kw) -> AnalysisConfig:
    from robustbench_nas.analysis.predict_protocol import PredictProtocol

    base = dict(ranking=RankingConfig(n_boot=100, n_boot_kendall=20),
                prediction=PredictProtocol(model="ridge", train_sizes=(100, 1000), repeats=1),
                encodings=["opcount"], search_budget=20, search_repeats=2)  # fmt: skip
    base.update(kw)
    return AnalysisConfig(**base)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    path = _store(root / "big.zarr", 150, collapsed=3)
    out = root / "out"
    summary = run_analysis(load_store(str(path)), out, _cfg())
    return out, summary


def test_report_structure_findings_first_and_links_resolve(big):
    out, summary = big
    text = (out / "report.html").read_text()
    doc = _Doc()
    doc.feed(text)
    assert doc.h2[0] == "Summary of findings" and doc.h2[1] == "Contents"
    assert text.index('id="findings"') < text.index("<nav>") < text.index('id="ranking"')
    for h in doc.hrefs:  # every link is an anchor of the page or a file written next to it; nothing online
        assert not re.match(r"^(https?:)?//", h), h
        assert (h[1:] in doc.ids) if h.startswith("#") else (out / h).is_file(), h
    assert all(s.startswith("data:image/png;base64,") for s in doc.srcs)  # embedded figures, no network
    assert "script" not in doc.tags and "<pre>" not in text  # no scripts, no raw JSON dump
    # each numbered section has a figure; tables are trimmed (the full CSV is linked instead)
    for sec in re.findall(r'<section id="(?!findings|files)[^"]+">(.*?)</section>', text, flags=re.S):
        assert "<figure>" in sec
    assert text.count("<tr>") < 120
    assert len(pd.read_csv(out / "ranking.csv")) > 0


def test_best_is_largest_abs_rho_with_sign_and_no_duplicates(big):
    out, summary = big
    best = summary["ranking_best"]["pgd@Linf@1/255"]
    assert best["feature"] == "proxy:anti" and best["spearman"] == pytest.approx(-1.0)
    R = pd.read_csv(out / "ranking.csv")
    assert "proxy:params" not in set(R["feature"]) and "params" in set(R["feature"])  # one row, not two
    assert summary["features_dropped_as_duplicates"] == ["proxy:params"]
    assert "Spearman -1.00" in (out / "report.html").read_text()
    # --min-clean (auto) keeps the collapsed cells out of the best lists
    bc = pd.read_csv(out / "best_cells.csv")
    assert summary["min_clean"] is not None and (bc["clean"] >= summary["min_clean"]).all()
    assert len(bc) and summary["cells_min_clean"] <= 150 - 3  # the 3 chance-level cells are out


def test_targets_sorted_by_eps_value_and_params_in_millions(big):
    out, _ = big
    cols = list(pd.read_csv(out / "targets.csv", index_col=0).columns)
    assert cols.index("pgd@Linf@0.1/255") < cols.index("pgd@Linf@1/255") < cols.index("pgd@Linf@2/255") \
        < cols.index("pgd@Linf@8/255")
    assert sort_targets(["x@255/255", "x@2/255", "clean", "adv_mean", "x@10/255"]) == \
        ["clean", "x@2/255", "x@10/255", "x@255/255", "adv_mean"]
    by = next(out.glob("by_params_*.csv"))
    assert pd.read_csv(by)["params_M"].between(0.01, 2).all()  # NB201 cells have 0.07-1.53 M parameters


def test_small_store_warns_instead_of_misleading(tmp_path):
    path = _store(tmp_path / "tiny.zarr", 8)
    summary = run_analysis(load_store(str(path)), tmp_path / "o", _cfg(min_clean=0.0))
    warn = " | ".join(w["text"] for w in summary["warnings"])
    assert "as few as 8 cells" in warn  # Spearman intervals on 8 cells
    assert "train size(s) 100, 1000" in warn and "used 4" in warn  # not silently shrunk
    assert "top 1 % of 8 cells is 1 cell" in warn
    assert "top-10% precision rests on 1 cell" in warn
    # no finding drawn from a group of one or two cells (an op on an edge, a shared parameter count)
    assert not any(re.search(r"n = [1-4]\b", f) for f in summary["findings"])
    assert not any("same size" in f for f in summary["findings"])
    html = (tmp_path / "o" / "report.html").read_text()
    assert html.count('class="warn"') >= 3 and "as few as 8 cells" in html[: html.index("<nav>")]
    # a filter every cell passes is not repeated as a second, identical subset
    s2 = run_analysis(load_store(str(path)), tmp_path / "o2", _cfg(min_clean=0.05, sections=("ranking",)))
    assert set(pd.read_csv(tmp_path / "o2" / "ranking.csv")["subset"]) == {"all"}
    assert any("not repeated" in w["text"] for w in s2["warnings"])


def test_best_per_target_uses_magnitude():
    R = pd.DataFrame({"feature": ["a", "b", "a", "b"], "target": ["t", "t", "u", "u"], "subset": "all",
                      "spearman": [0.2, -0.6, 0.5, np.nan]})  # fmt: skip
    b = best_per_target(R).set_index("target")
    assert b.loc["t", "feature"] == "b" and b.loc["t", "sign"] == "-" and b.loc["u", "feature"] == "a"


def test_cli_min_clean_and_progress_on_stderr(tmp_path):
    path = _store(tmp_path / "s.zarr", 40)
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(tmp_path / "o"), "--n-boot", "50",
                                                 "--models", "ridge", "--train-sizes", "20", "--repeats", "1",
                                                 "--search-budget", "10", "--search-repeats", "1", "--min-clean",
                                                 "0.7", "--encodings", "opcount", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output + r.stderr
    got = json.loads(r.stdout)  # stdout is JSON only
    assert got["findings"] and "analyze" in r.stderr  # the progress bar went to stderr
    bad = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(tmp_path / "o"), "--min-clean", "80"])
    assert bad.exit_code == 2 and "--min-clean must be in [0, 1]" in bad.output


@pytest.fixture
def extra_section_name():
    """A section name free for one test; whatever the test registers under it is unregistered afterwards."""
    from robustbench_nas.analysis.sections import SECTIONS

    yield "extra_study"
    if "extra_study" in SECTIONS:
        SECTIONS.remove("extra_study")


def test_registered_section_joins_report_and_toc(tmp_path, extra_section_name):
    from robustbench_nas.analysis import report as rp

    @rp.register_section(extra_section_name)
    def _extra(ctx):
        ctx.report.warn("extra_study", "a warning of the extra section")
        ctx.report.finding("The extra section found <b>something</b>.")
        ctx.report.section("extra_study", "An extra study", f"<p>{len(ctx.targets)} cells</p>")

    path = _store(tmp_path / "s.zarr", 40)
    s = run_analysis(load_store(str(path)), tmp_path / "o", _cfg(sections=("ranking", "extra_study")))
    text = (tmp_path / "o" / "report.html").read_text()
    assert '<a href="#extra_study">An extra study</a>' in text and "<p>40 cells</p>" in text
    assert "The extra section found something." in s["findings"] and "extra_study" in s["seconds"]
    assert text.index("a warning of the extra section") < text.index("<nav>")  # listed with the findings
    assert rp.list_sections()[-1] == "extra_study"


def test_section_names_are_unique_and_in_report_order(extra_section_name):
    """A second section under a taken name is refused (it would silently replace a section otherwise), and the
    built-in sections come first whatever module registered first."""
    from robustbench_nas.analysis import report as rp

    assert rp.list_sections()[:4] == ["ranking", "architecture", "prediction", "search"]
    assert rp.list_sections().index("proxy_study") < rp.list_sections().index("target_reliability")
    with pytest.raises(ValueError, match="already registered"):
        rp.register_section("ranking")(lambda ctx: None)
    rp.register_section(extra_section_name, order=0)(lambda ctx: None)
    assert rp.list_sections()[0] == extra_section_name


def test_no_section_imports_the_report():
    """The section registry sits below the report: the sections, the studies that register sections (twins,
    proxy_study) and the report's parts never import ``analysis/report.py``, which imports them (one way)."""
    import ast

    import robustbench_nas.analysis as analysis

    root = Path(analysis.__file__).parent
    modules = [root / "twins.py", root / "proxy_study.py", *root.glob("report_*.py"), root / "target_names.py",
               *(root / "sections").glob("*.py")]
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
                if any(n.split(".")[-1] == "report" or n.endswith("analysis.report") for n in names):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name.endswith("analysis.report") for a in node.names):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert len(modules) >= 10 and not offenders, offenders
