"""The built documentation site as a reader meets it (make docs): its pages opened in headless Chromium (Debian's
package, driven by Playwright), 1280 px wide. Each guide shows its heading and the example DAG's code between its
markers; no code block of the first-DAG page scrolls sideways; the front page shows the install command and the
flow picture the build drew, at a readable size; the sidebar shows every operator's whole name. Screenshots land in
``docs/_build/screenshots``."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests import os_packages

pytestmark = [pytest.mark.docs, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("FEISHU_VC_DOCS_HTML", REPO / "docs" / "_build" / "html"))
SHOTS = SITE.parent / "screenshots"

#: page -> (its heading, the example file and marker whose code it must show, or None)
GUIDES: dict[str, tuple[str, tuple[str, str] | None]] = {
    "connections": ("Connecting a Feishu or Lark app", None),
    "first-dag": ("A first DAG", ("example_feishu_vc_first_dag.py", "first_dag")),
    "operators/export": (
        "FeishuVCExportOperator",
        ("example_feishu_vc_one_task.py", "howto_operator_feishu_vc_export"),
    ),
    "operators/create": (
        "FeishuVCCreateExportOperator",
        ("example_feishu_vc_export.py", "howto_operator_feishu_vc_create_export"),
    ),
    "operators/sensor": ("FeishuVCExportSensor", ("example_feishu_vc_export.py", "howto_sensor_feishu_vc_export")),
    "operators/download": (
        "FeishuVCDownloadExportOperator",
        ("example_feishu_vc_export.py", "howto_operator_feishu_vc_download_export"),
    ),
}


def example_code(file_name: str, marker: str) -> str:
    text = (REPO / "example_dags" / file_name).read_text()
    between = re.search(rf"# \[START {marker}\]\n(.*?)\n\s*# \[END {marker}\]", text, re.DOTALL)
    assert between, f"{file_name} has no {marker} markers"
    return textwrap.dedent(between.group(1))


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def browser() -> Any:
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site at {SITE}: run `make docs`")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = os_packages.command("chromium", "chromium")
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.parametrize("page_name", sorted(GUIDES))
def test_each_guide_shows_its_heading_and_the_example_dags_code(browser: Any, page_name: str) -> None:
    heading, example = GUIDES[page_name]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((SITE / f"{page_name}.html").as_uri())
        assert heading in page.locator("h1").first.inner_text()
        body = page.locator("article[role=main]").inner_text()
        assert len(body) > 500, f"{page_name} shows almost nothing: {body!r}"
        if example is not None:
            shown = squeezed(" ".join(page.locator("div.highlight pre").all_inner_texts()))
            assert squeezed(example_code(*example)) in shown, f"{page_name} does not show the {example[1]} code"
        page.screenshot(path=str(SHOTS / f"{page_name.replace('/', '-')}.png"), full_page=True)
    finally:
        page.close()


def test_no_code_block_of_the_first_dag_page_scrolls_sideways(browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((SITE / "first-dag.html").as_uri())
        blocks = page.locator("div.highlight pre").evaluate_all(
            "blocks => blocks.map(b => [b.scrollWidth, b.clientWidth, b.innerText.split('\\n')[0]])"
        )
        assert len(blocks) >= 8, blocks
        cut = [(first_line, scroll, client) for scroll, client, first_line in blocks if scroll > client]
        assert cut == [], f"code blocks wider than the column (first line, scrollWidth, clientWidth): {cut}"
        page.screenshot(path=str(SHOTS / "first-dag-1280.png"), full_page=True)
    finally:
        page.close()


def test_the_front_page_shows_the_install_command_the_flow_picture_and_links_every_guide(browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((SITE / "index.html").as_uri())
        install = page.locator("div.highlight pre", has_text="pip install").first
        assert install.is_visible() and "airflow-provider-feishu-vc" in install.inner_text()
        picture = page.locator("div.graphviz object, div.graphviz img, div.graphviz svg").first
        box = picture.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 50, box
        svg = next(SITE.glob("_images/graphviz-*.svg")).read_text()
        for step in ("create", "deferred", "download", "typed table"):
            assert step in svg.lower(), f"the flow picture has no {step!r} step"
        # Readable at 1x: shown at no less than the size it was drawn (labels of 14 px or more), not shrunk.
        drawn = re.search(r'<svg width="([\d.]+)pt"', svg)
        assert drawn and box["width"] >= float(drawn.group(1)) * 4 / 3 - 1, (box, drawn)
        sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)"', svg)]
        assert sizes and min(sizes) >= 10.5, sizes  # points: 14 px
        links = page.locator("div.toctree-wrapper a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        for page_name in GUIDES:
            assert f"{page_name}.html" in links, f"the front page does not link {page_name}"
        page.screenshot(path=str(SHOTS / "index.png"), full_page=True)
    finally:
        page.close()


def test_the_sidebar_shows_each_operators_whole_name(browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((SITE / "index.html").as_uri())
        # Per link: its text, whether its content overflows it, how far right it reaches against the sidebar's
        # edge, and how many lines its innermost text takes.
        links = page.locator(".sidebar-tree a").evaluate_all(
            "links => links.map(a => [a.innerText, a.scrollWidth - a.clientWidth,"
            " a.getBoundingClientRect().right - a.closest('.sidebar-container').getBoundingClientRect().right,"
            " new Set([...(a.querySelector('span.pre') || a).getClientRects()].map(r => Math.round(r.top))).size])"
        )
        shown = {text.strip(): (overflow, past_edge, lines) for text, overflow, past_edge, lines in links}
        for heading, _ in GUIDES.values():
            if heading.startswith("FeishuVC"):
                overflow, past_edge, lines = shown[heading]
                assert overflow <= 0 and past_edge <= 0 and lines == 1, (heading, shown[heading])
        page.screenshot(path=str(SHOTS / "sidebar.png"), clip={"x": 0, "y": 0, "width": 420, "height": 700})
    finally:
        page.close()


def test_the_tables_page_shows_each_kinds_schema_as_a_table(browser: Any) -> None:
    from airflow_provider_feishu_vc.tables.contract import CONTRACTS

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        page.goto((SITE / "tables.html").as_uri())
        tables = page.locator("article[role=main] table").all_inner_texts()
        for kind, columns in CONTRACTS.items():
            names = [column.name for column in columns]
            assert any(all(name in table for name in names) for table in tables), f"no schema table for {kind}"
        page.screenshot(path=str(SHOTS / "tables.png"), full_page=True)
    finally:
        page.close()


def test_no_page_shows_a_directive_as_text() -> None:
    """A directive the Markdown parser did not run shows up as its own source text."""
    leftovers = {}
    for html in SITE.rglob("*.html"):
        text = html.read_text()
        found = [mark for mark in (".. graphviz::", ".. list-table::", "```{", "digraph ") if mark in text]
        if found:
            leftovers[str(html.relative_to(SITE))] = found
    assert leftovers == {}
