"""What the docs build draws from the code itself: each export kind's schema table (from the column contract) and
the picture of the flow, so that the pages never drift from the provider."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.ext.graphviz import Graphviz

from airflow_provider_feishu_vc.tables.contract import ARROW_TYPE_NAMES, CONTRACTS, ValueKind, listed_headers

FLOW = """
digraph flow {
    rankdir=LR; bgcolor="transparent";
    node [shape=box, style="rounded,filled", fillcolor="#eef3ff", color="#3370ff", fontname="Helvetica"];
    edge [color="#555555", fontname="Helvetica", fontsize=10];
    create [label="create export\\n(worker)"];
    wait [label="deferred wait\\n(triggerer: no worker slot)"];
    download [label="download\\n(worker, streamed)"];
    table [label="typed table\\nParquet / CSV"];
    store [label="storage\\nlocal, S3, GCS...", shape=cylinder];
    create -> wait [label="export_task_id"];
    wait -> download [label="file_token"];
    download -> store [label="xlsx"];
    download -> table [label="tables extra"];
    table -> store;
}
"""


def _cell(*texts: str, literal: bool = False) -> nodes.entry:
    paragraph = nodes.paragraph()
    for index, text in enumerate(texts):
        if index:
            paragraph += nodes.Text(", ")
        paragraph += nodes.literal(text, text) if literal else nodes.Text(text)
    return nodes.entry("", paragraph)


def _table(header: list[str], rows: list[list[nodes.entry]], widths: list[int]) -> nodes.table:
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=width) for width in widths]
    group += nodes.thead("", nodes.row("", *(_cell(name) for name in header)))
    group += nodes.tbody("", *(nodes.row("", *cells) for cells in rows))
    return nodes.table("", group)


class ExportSchema(Directive):
    """``.. feishu-vc-schema:: meeting_list``: the kind's columns, Arrow types and accepted headers."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rows = []
        for column in CONTRACTS[self.arguments[0]]:
            unit = f" ({column.unit})" if column.kind is ValueKind.FIGURE and column.unit else ""
            headers = list(listed_headers(self.arguments[0], column))
            rows.append([_cell(column.name, literal=True), _cell(ARROW_TYPE_NAMES[column.kind] + unit),
                         _cell(*headers, literal=True)])  # fmt: skip
        return [_table(["column", "type", "headers accepted"], rows, [30, 25, 45])]


class ExportFlow(Graphviz):
    """``.. feishu-vc-flow::``: the picture of create -> deferred wait -> download -> typed table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.content = StringList(FLOW.strip().splitlines())
        self.options.setdefault("alt", "create export, deferred wait, download, typed table")
        return super().run()


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("feishu-vc-schema", ExportSchema)
    app.add_directive("feishu-vc-flow", ExportFlow)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
