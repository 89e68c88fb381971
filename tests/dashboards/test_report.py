"""``index.html`` of ``mm1 plots``: self-contained and offline (no external URL, no script), loads in headless
Chromium without console errors, every image decodes, the table of contents and file links resolve."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from dashboards.plots import Figure, make_report
from dashboards.report import _number, write_index
from dashboards.runs import Store
from tests.dashboards.conftest import FakeStore
from tests.dashboards.test_plots import grid

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and we are root; skipped only when it cannot be."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed in this environment")
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    tail = ""
    try:
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:  # stale or missing package lists: update them once, then try again
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=180)
            result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] if result.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        tail = [f"{type(exc).__name__}: {exc}"]
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing and `apt-get install chromium` did not provide it: {' '.join(tail)}")
    return CHROMIUM


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """A real report: a connector sweep (2 seeds, loss history) and a data-synthetic sweep; the rest skipped."""
    store = FakeStore(tmp_path_factory.mktemp("store"))
    store.add_sweep("report", "conn", grid(model__connector__type=["avg-pool", "c-abstractor"], history=True))
    store.add_sweep("report", "synth <&>", grid(seeds=(0,), data__synthetic_captions=[False, True]))
    report = make_report(Store(store.uri), "report", None, tmp_path_factory.mktemp("out"))
    assert {f.name for f in report.figures} >= {"connectors", "data-synthetic", "learning-curves"}
    return report.index


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, name, value))


def test_index_is_self_contained_and_its_links_resolve(index: Path):
    text = index.read_text()
    parser = Links()
    parser.feed(text)
    assert "script" not in parser.tags and "http://" not in text and "https://" not in text
    assert "<style>" in text and "link" not in parser.tags  # inline CSS, no stylesheet or icon fetched
    images = [value for tag, name, value in parser.refs if tag == "img"]
    assert images and all(value.endswith(".png") for value in images)
    for _tag, _name, value in parser.refs:
        if value.startswith("#"):
            assert value[1:] in parser.ids, value
        else:
            assert urlparse(value).scheme == "" and not value.startswith("/"), value
            assert (index.parent / unquote(value)).is_file(), value
    assert text.count('<img src="') == text.count(' alt="') and 'alt=""' not in text
    assert "sweep synth &lt;&amp;&gt;" in text  # names are escaped
    assert 'id="skipped"' in text and "no sweep varies model.encoder.name" in text
    assert "Tracking URI" in text and "sqlite:///" in text and "generated" in text


def test_index_loads_in_headless_chromium_without_errors(index: Path, chromium: str):
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url} {r.failure}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(index.as_uri(), wait_until="load")
            page.wait_for_load_state("networkidle")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
            )
            title = page.title()
            anchors = page.evaluate("Array.from(document.querySelectorAll('nav a')).length")
        finally:
            browser.close()
    assert not problems, problems
    assert images and all(complete and width > 0 for _, complete, width in images), images
    assert requests and all(url.startswith("file://") for url in requests), requests
    assert title == "MM1 lesson plots - report" and anchors >= 3


def test_number_formatting_keeps_two_to_three_significant_decimals():
    assert [_number(v) for v in (45.678, 0.0021, 64.0, 3, float("nan"), None, "x")] == [
        "45.68", "0.0021", "64", "3", "-", "-", "x",
    ]  # fmt: skip


def test_write_index_with_no_figures_lists_the_skipped(tmp_path: Path):
    path = write_index(tmp_path, "e", [], [("connectors", "no sweep varies model.connector.type")], "sqlite:///x.db")
    text = path.read_text()
    assert path == tmp_path / "index.html" and "No figure could be drawn" in text
    assert "no sweep varies model.connector.type" in text


def test_long_tables_are_cut_in_the_page_but_whole_in_the_csv(tmp_path: Path):
    table = pd.DataFrame({"step": range(100), "train/loss": [1 / (i + 1) for i in range(100)]})
    (tmp_path / "f.csv").write_text(table.to_csv(index=False))
    figure = Figure("learning-curves", "T", [tmp_path / "f.csv"], {"s"}, table, caption="c")
    text = write_index(tmp_path, "e", [figure], [], "sqlite:///x.db").read_text()
    assert "First 40 of 100 rows" in text and text.count("<tr") == 41  # header + 40 rows
