"""The docs pages' code blocks, as tests read them."""

from __future__ import annotations

import re
import textwrap


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, indented ones (inside a list) included, in page order."""
    found = re.finditer(r"^( *)```([\w{}-]*)[^\n]*\n(.*?)^\1```$", markdown, re.MULTILINE | re.DOTALL)
    return [(block.group(2), textwrap.dedent(block.group(3))) for block in found]
