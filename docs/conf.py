"""Sphinx configuration of the provider's documentation (``make docs``; warnings are errors)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

from airflow_provider_feishu_vc import __version__  # noqa: E402

project = "airflow-provider-feishu-vc"
author = "The airflow-provider-feishu-vc developers"
copyright = "2026, the airflow-provider-feishu-vc developers"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "feishu_vc_docs",  # the flow picture, drawn at build time
]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "examples", "README.md"]
suppress_warnings = ["myst.xref_missing"]  # links into the repository's files, shown as plain text here

# Furo: maintained and responsive; its content column widens with the window, code blocks scroll only when a line
# is longer than the column (tests/docs_site checks that no first-DAG block does at 1280 px), and the sidebar wraps
# long operator names instead of cutting them.
html_theme = "furo"
html_title = f"Feishu VC provider {__version__}"
html_static_path = ["_static"]
html_css_files = ["feishu_vc.css"]
graphviz_output_format = "svg"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
nitpicky = False
