"""The report as a reader sees it: headless Chromium loads ``report.html`` copied alone into an empty folder.

Checked from the rendered page: every image shows (none broken, so every figure is embedded), no text runs off the
page width, no Markdown pipe table or ``<pre>`` table is left, and a too-small sample says so in a banner first.

In CI (``CI=true``) Chromium and its driver must be there (``.ci/run`` installs Debian's ``chromium`` and
``chromium-driver``), so the test runs and never skips; locally it skips with the install command.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from robustbench_nas.analysis.report import run_analysis
from robustbench_nas.analysis.targets import load_store

from test_analysis_report import _cfg, _store  # noqa: E402  (tests/ is on sys.path under pytest)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("CI must run the browser test: apt-get install chromium chromium-driver (.ci/run does)")
    pytest.skip("no headless Chromium here (apt-get install chromium chromium-driver)", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")

#: JavaScript run in the page: what a reader would notice
PAGE_FACTS = """
const imgs = Array.from(document.images);
const pres = Array.from(document.querySelectorAll('pre')).map(p => p.innerText);
return {
  images: imgs.length,
  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 60)),
  external: imgs.filter(i => !i.src.startsWith('data:')).map(i => i.src),
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  preTables: pres.filter(t => /\\|\\s*-{3,}/.test(t)).length,
  text: document.body.innerText,
  firstBlock: document.body.firstElementChild ? document.body.firstElementChild.className : '',
  tables: document.querySelectorAll('table').length,
};
"""


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--proxy-server=127.0.0.1:9", "--window-size=1280,900"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_page_load_timeout(120)
    yield drv
    drv.quit()


def _facts(browser, report: Path, tmp: Path) -> dict:
    alone = tmp / "alone"
    alone.mkdir()
    shutil.copy(report, alone / "report.html")  # nothing beside it: figures must be inside the file
    browser.get(f"file://{alone / 'report.html'}")
    return browser.execute_script(PAGE_FACTS)


def _check(facts: dict) -> None:
    assert facts["images"] > 0 and facts["broken"] == [] and facts["external"] == [], facts["broken"]
    assert facts["scrollWidth"] <= facts["clientWidth"] + 1, (facts["scrollWidth"], facts["clientWidth"])
    assert facts["preTables"] == 0
    assert not re.search(r"\|\s*-{3,}\s*\|", facts["text"]), "a Markdown pipe table is left in the page"
    assert facts["tables"] > 0


def test_small_report_stands_alone_with_a_banner(browser, tmp_path):
    path = _store(tmp_path / "s.zarr", 12)
    run_analysis(load_store(str(path)), tmp_path / "o", _cfg(sections=("ranking", "architecture")))
    facts = _facts(browser, tmp_path / "o" / "report.html", tmp_path)
    _check(facts)
    assert facts["firstBlock"] == "banner" and facts["text"].lstrip().startswith("Smoke test: 12 cells.")


def test_large_report_has_no_banner(browser, tmp_path):
    path = _store(tmp_path / "s.zarr", 60)
    run_analysis(load_store(str(path)), tmp_path / "o", _cfg(sections=("ranking",)))
    facts = _facts(browser, tmp_path / "o" / "report.html", tmp_path)
    _check(facts)
    assert facts["firstBlock"] != "banner" and "Smoke test" not in facts["text"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "jung2023" / "meta.json").is_file(), reason="../shared/data/jung2023 not present")
def test_release_report_with_proxy_study_and_twins_stands_alone(browser, tmp_path):
    """The imported release with the proxy study (heat maps) and the twin section (scatter): the sections whose
    figures were links to files and whose tables were Markdown in <pre>."""
    from robustbench_nas.analysis.importer import import_jung2023

    store = tmp_path / "jung.zarr"
    import_jung2023(SHARED / "jung2023", store, measures=("accuracy",), progress=False)
    cfg = _cfg(sections=("ranking", "proxy_study", "target_reliability"), proxies="shipped")
    run_analysis(load_store(str(store)), tmp_path / "o", cfg)
    facts = _facts(browser, tmp_path / "o" / "report.html", tmp_path)
    _check(facts)
    assert facts["images"] >= 4 and "How noisy are the targets?" in facts["text"]
    assert "Zero-cost proxies vs the published robustness" in facts["text"]
