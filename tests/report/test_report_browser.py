"""The report in a real browser (issue 11, item 5): headless Chromium, driven by selenium through Debian's
``chromedriver``, opens a smoke report built from two small real tables (Table 5, with its executed
notebook, and Table 7), once from the file system (``file://``) and once from a static HTTP server on
127.0.0.1 (``python -m http.server``'s handler serving the results folder, as a static host would).

On every page (the index, each table page, the profile page, the executed notebook): it loads, the browser
logs no console error, every link (``a[href]``) and image (``img[src]``) resolves -- the file exists, or the
server answers 200, or a ``data:`` URI decodes as a PNG the browser drew -- and each table page shows its
claims with a verdict per claim, the same as ``<table>_claims.csv``. A screenshot of the index goes to
``results/browser/report_index.png`` (``ROAD_UPDATE_DOCS_SCREENSHOT=1`` also refreshes the README's
``docs/report_index.png``).

Skips, with the reason, where Chromium, chromedriver or selenium is absent (``make test`` installs the
browser with apt-get where it runs as root on Debian).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse
from urllib.request import url2pathname

import pandas as pd
import pytest

from road_repro.config import REPO_ROOT, load_profile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium "
                                                "chromium-driver; make test does this when run as root)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="chromedriver is not installed (Debian: apt-get install "
                                                    "chromium-driver; make test does this when run as root)"),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

#: The tables the report is built from: Table 5 (claims, an ensemble row, the executed notebook) and
#: Table 7 (rows the paper quotes beside rows we run).
TABLES = ("table5", "table7")
#: Headless, and nothing that reaches for the network on its own (this machine has none).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1280,900")
VERDICTS = {"holds", "reversed", "inconclusive", "too few seeds"}
PNG = b"\x89PNG\r\n\x1a\n"
SCREENSHOTS = REPO_ROOT / "results" / "browser"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "report_index.png"


def tiny_overrides() -> list[str]:
    """Settings that make a smoke table take seconds: two seeds, two teachers, a few steps on a few examples,
    and a short warm start (phase 1 only) of every model the smoke profile warm-starts."""
    overrides = [
        "seeds=[1,2]", "distill.n_teachers=2", "tasks.squad_v2.train.limit=64", "tasks.squad_v2.dev.limit=32",
        "finetune.epochs=1", "mtl.optim.steps=4", "mtl.optim.batch_size=8",
        "mtl.datasets.synthetic_squad_warmup.limit=24", "mtl.datasets.synthetic_nli.limit=24",
        "mtl.datasets.synthetic_sentiment.limit=24", "mtl.datasets.synthetic_paraphrase.limit=24",
        "runtime.progress=false",
    ]
    for name, model in load_profile("smoke").models.items():
        if model.warm_start is None:
            continue
        overrides += [f"models.{name}.warm_start.{setting}" for setting in
                      ("steps=10", "batch_size=8", "limit=64", "mixture_steps=0")]  # mixture_steps=0: phase 1 only
    return overrides


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder as ``make reproduce-all`` leaves it: runs/, smoke/<table>.* and smoke/report/."""
    from road_repro.experiments.tables import run_table
    from road_repro.report.html import build_report

    root = tmp_path_factory.mktemp("browser_results")
    overrides = tiny_overrides()
    for table in TABLES:
        run_table(table, "smoke", output_dir=root, runs_dir=root / "runs", overrides=overrides, progress=False)
    # The executed notebook, as make reproduce-all writes it (its stages are all cached by now).
    (root / "smoke" / "notebooks").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / "table5.ipynb"),
           str(root / "smoke" / "notebooks" / "table5.ipynb"), "-k", "python3", "-p", "profile", "smoke",
           "-p", "output_dir", str(root), "-p", "progress", "False", "-y", json.dumps({"overrides": overrides})]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, f"papermill table5 failed:\n{done.stderr[-3000:]}"
    build_report(root, "smoke")  # as make reproduce-all does last: the notebook page of the finished notebook
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture(scope="module")
def server(results):
    """A static HTTP server on 127.0.0.1 (a free port) serving the results folder; yields the report's URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(results)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/smoke/report/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium (the system's) through the system's chromedriver, a fresh profile, console logged."""
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium_profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A driver path given: selenium does not run Selenium Manager (which would try to download one).
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@dataclass
class Page:
    url: str
    title: str
    h1: str
    links: list[str]
    images: list[dict]
    errors: list[str]  # console errors about the report itself
    external: list[str]  # console errors about resources on other hosts (none expected; see CDN)
    anchors: dict[str, bool] = field(default_factory=dict)  # same-page #fragment -> its target exists
    claims: list[dict] | None = None  # the verdict cells of the claims table, where the page has one
    banner: bool = False


_PAGE_INFO = """
const verdictTable = Array.from(document.querySelectorAll('table')).find(
    t => Array.from(t.querySelectorAll('tr:first-child th')).some(th => th.textContent.trim() === 'verdict'));
let claims = null;
if (verdictTable) {
  const heads = Array.from(verdictTable.querySelectorAll('tr:first-child th')).map(th => th.textContent.trim());
  const col = heads.indexOf('verdict');
  claims = Array.from(verdictTable.querySelectorAll('tr')).slice(1).map(tr => {
    const td = tr.querySelectorAll('td')[col];
    const box = td.getBoundingClientRect();
    return {claim: tr.querySelector('td').childNodes[0].textContent.trim(), verdict: td.textContent.trim(),
            cls: td.className, shown: box.width > 0 && box.height > 0 && getComputedStyle(td).visibility !== 'hidden'};
  });
}
const banner = document.querySelector('.banner');
return {
  title: document.title,
  h1: (document.querySelector('h1') || {textContent: ''}).textContent.trim(),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: Array.from(document.querySelectorAll('img[src]')).map(
      i => ({src: i.src, alt: i.alt, drawn: i.complete && i.naturalWidth > 0, width: i.naturalWidth})),
  claims: claims,
  banner: !!banner && banner.getBoundingClientRect().height > 0,
};
"""


def _is_external(message: str, origin: str) -> bool:
    """A console message about a resource on another host than the report's."""
    url = message.split(" ", 1)[0]
    return url.startswith(("http://", "https://")) and not url.startswith(origin)


def _load(driver, url: str, origin: str) -> Page:
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(url)
    driver.execute_async_script(  # every image decoded, so naturalWidth is final
        "const done = arguments[arguments.length - 1];"
        "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => done());")
    info = driver.execute_script(_PAGE_INFO)
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    page = Page(url=url, title=info["title"], h1=info["h1"], links=info["links"], images=info["images"],
                errors=[m for m in severe if not _is_external(m, origin)],
                external=[m for m in severe if _is_external(m, origin)], claims=info["claims"],
                banner=info["banner"])
    for link in page.links:
        target, fragment = urldefrag(link)
        if fragment and target == urldefrag(url)[0]:
            page.anchors[fragment] = driver.execute_script(
                "const f = arguments[0]; return !!(document.getElementById(f) || document.getElementsByName(f).length);",
                unquote(fragment))
    return page


def _crawl(driver, index: str, origin: str) -> dict[str, Page]:
    """Every HTML page of the report reachable from the index by links (the report folder only)."""
    root = index.rsplit("/", 1)[0] + "/"
    pages: dict[str, Page] = {}
    queue = [index]
    while queue:
        url = queue.pop(0)
        if url in pages:
            continue
        pages[url] = page = _load(driver, url, origin)
        for link in page.links:
            target = urldefrag(link)[0]
            if target.startswith(root) and target.endswith(".html") and target not in pages:
                queue.append(target)
    return pages


@dataclass
class Site:
    scheme: str
    index: str
    pages: dict[str, Page]


@pytest.fixture(scope="module", params=["file", "http"])
def site(request, results, server, browser) -> Site:
    """The report crawled in the browser from the file system or from the HTTP server."""
    if request.param == "file":
        index, origin = (results / "smoke" / "report" / "index.html").as_uri(), "file://"
    else:
        index, origin = server + "index.html", server.split("/smoke/", 1)[0]
    return Site(request.param, index, _crawl(browser, index, origin))


def _page(site: Site, name: str) -> Page:
    matches = [p for url, p in site.pages.items() if url.endswith("/" + name)]
    assert matches, f"{name} not reached from the index ({site.scheme}): {sorted(site.pages)}"
    return matches[0]


def test_every_page_loads(site, results):
    names = {url.split("/smoke/report/", 1)[1] for url in site.pages}
    assert names == {"index.html", "profile.html", *(f"{t}.html" for t in TABLES), "notebooks/table5.html"}
    for url, page in site.pages.items():
        assert page.title and page.h1, (url, page.title, page.h1)
    index = _page(site, "index.html")
    assert index.h1.startswith("ROaD reproduction report") and index.banner
    for table in TABLES:
        meta = json.loads((results / "smoke" / f"{table}.json").read_text())
        assert _page(site, f"{table}.html").h1.startswith(meta["table"])
    assert _page(site, "profile.html").h1 == "Profile smoke"


def _notebook_favicon(url: str, message: str) -> bool:
    """The notebook page (nbconvert's, not ours) names no icon, so a static host without one answers 404."""
    return "/notebooks/" in url and "/favicon.ico " in message and "404" in message


def test_no_console_errors(site):
    errors = {url: [m for m in page.errors if not _notebook_favicon(url, m)] for url, page in site.pages.items()}
    errors = {url: messages for url, messages in errors.items() if messages}
    assert not errors, json.dumps(errors, indent=1)
    # No page loads anything from another host (the notebook page included).
    external = {url: page.external for url, page in site.pages.items() if page.external}
    assert not external, json.dumps(external, indent=1)


#: Straight to the local server, whatever proxy the environment names.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _resolves(url: str) -> str | None:
    """None when ``url`` resolves, else why not."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(url2pathname(unquote(parsed.path)))
        return None if path.is_file() else f"no file {path}"
    if parsed.scheme == "http" and parsed.hostname == "127.0.0.1":
        try:
            with _LOCAL.open(url, timeout=10) as response:
                return None if response.status == 200 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
    return f"points outside the report ({parsed.scheme}://{parsed.hostname})"


def test_every_link_and_image_resolves(site):
    broken, checked = [], set()
    for url, page in site.pages.items():
        for fragment, found in page.anchors.items():
            if not found:
                broken.append(f"{url}: #{fragment} has no target")
        for link in page.links:
            target = urldefrag(link)[0]
            if target == urldefrag(url)[0] or target in checked:
                continue
            checked.add(target)
            why = _resolves(target)
            if why:
                broken.append(f"{url}: a[href] {target}: {why}")
        for image in page.images:
            src = image["src"]
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                if header != "data:image/png;base64" or not base64.b64decode(payload).startswith(PNG):
                    broken.append(f"{url}: img data URI is not a base64 PNG ({header})")
            elif _resolves(src):
                broken.append(f"{url}: img {src}: {_resolves(src)}")
            if not image["drawn"]:
                broken.append(f"{url}: img {src[:60]} was not drawn")
    assert not broken, "\n".join(broken)
    # What the links cover: every run behind a number, the CSVs, and the notebook.
    table5 = _page(site, "table5.html")
    assert sum("/runs/" in link and link.endswith("/config.json") for link in table5.links) >= 8
    assert any(link.endswith("/smoke/table5_claims.csv") for link in table5.links)
    assert any(link.endswith("/notebooks/table5.html") for link in table5.links)


def test_each_table_page_shows_its_verdicts(site, results):
    for table in TABLES:
        page = _page(site, f"{table}.html")
        expected = pd.read_csv(results / "smoke" / f"{table}_claims.csv")
        assert page.claims is not None, f"{table}: no claims table with a verdict column"
        assert [c["claim"] for c in page.claims] == expected["claim"].tolist()
        assert [c["verdict"] for c in page.claims] == expected["verdict"].tolist()
        for claim in page.claims:
            assert claim["verdict"] in VERDICTS and claim["shown"], (table, claim)
            assert claim["cls"] == claim["verdict"].replace(" ", "-"), (table, claim)  # coloured by verdict
        assert page.banner  # smoke scale: "a pipeline check, not a reproduction"
        (plot,) = [i for i in page.images if i["src"].startswith("data:") and i["alt"].endswith(" plot")]
        assert 0 < plot["width"] <= 1100  # the figure is at most 11 in wide at 100 dpi
        (curves,) = [i for i in page.images if i["alt"].endswith(" training curves")]  # every row's runs trained
        assert curves["src"].startswith("data:") and curves["drawn"] and 0 < curves["width"] <= 1100


def test_every_training_run_logged_every_step(results):
    """Each run that trained (a train_log.json) has its train_log*.csv, one row per step (issue 20)."""
    from road_repro.train.train_log import read_rows

    trained = [run for run in (results / "runs").iterdir() if (run / "train_log.json").is_file()]
    assert any(r.name.startswith("finetune-") for r in trained) and any(r.name.startswith("mtl-") for r in trained)
    for run in trained:
        rows = [row for csv_path in sorted(run.glob("train_log*.csv")) for row in read_rows(csv_path)]
        assert len(rows) == len(json.loads((run / "train_log.json").read_text())), run.name


def _full_page_png(driver, url: str) -> bytes:
    """The whole page, not only the window (Chromium's DevTools protocol), at the window's width."""
    driver.get(url)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    return base64.b64decode(shot["data"])


def test_screenshot_of_the_index(results, browser):
    png = _full_page_png(browser, (results / "smoke" / "report" / "index.html").as_uri())
    assert png.startswith(PNG) and len(png) > 10_000
    height = int.from_bytes(png[20:24], "big")  # the PNG's IHDR height
    assert height > 900  # the whole page, beyond the 1280 x 900 window
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "report_index.png").write_bytes(png)
    if os.environ.get("ROAD_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.write_bytes(png)
    table5 = _full_page_png(browser, (results / "smoke" / "report" / "table5.html").as_uri())
    (SCREENSHOTS / "report_table5.png").write_bytes(table5)


def test_the_notebook_page_is_self_contained(site):
    page = _page(site, "notebooks/table5.html")
    assert not page.external, page.external
    assert not [m for m in page.errors if _notebook_favicon(page.url, m)]
