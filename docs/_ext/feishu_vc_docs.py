"""The picture of the flow, drawn by Graphviz at build time. (The schema tables are Markdown in the pages themselves,
generated from the column contract and checked by ``tests/tables/test_reader.py``, so they read anywhere.)"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.ext.graphviz import Graphviz

FLOW = """
digraph flow {
    rankdir=TB; bgcolor="transparent"; nodesep=0.5; ranksep=0.45;
    node [shape=box, style="rounded,filled", fillcolor="#eef3ff", color="#3370ff", fontname="Helvetica",
          fontsize=14, margin="0.2,0.08"];
    edge [color="#555555", fontname="Helvetica", fontsize=12];
    create [label="create export\\n(worker)"];
    wait [label="deferred wait\\n(triggerer: no worker slot)"];
    download [label="download\\n(worker, streamed)"];
    table [label="typed table\\nParquet / CSV"];
    store [label="storage\\nlocal, S3, GCS...", shape=cylinder];
    create -> wait [label="  export_task_id"];
    wait -> download [label="  file_token"];
    download -> store [label="  xlsx"];
    download -> table [label="  tables extra"];
    table -> store;
}
"""


class ExportFlow(Graphviz):
    """``.. feishu-vc-flow::``: the picture of create -> deferred wait -> download -> typed table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.content = StringList(FLOW.strip().splitlines())
        self.options.setdefault("alt", "create export, deferred wait, download, typed table")
        return super().run()


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("feishu-vc-flow", ExportFlow)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
