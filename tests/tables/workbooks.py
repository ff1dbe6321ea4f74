"""Workbooks for the table tests: written with XlsxWriter (a real xlsx writer) or, for hostile ones, as raw zips."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import xlsxwriter

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/'
    '2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships'
    '+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override '
    'PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'spreadsheetml.worksheet+xml"/></Types>'
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/'
    'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
    '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/'
    'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)


def write(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """A one-sheet workbook, every cell text (as Feishu writes them); None leaves a cell empty."""
    with xlsxwriter.Workbook(str(path)) as book:
        sheet = book.add_worksheet("会议明细")
        sheet.write_row(0, 0, list(header))
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row):
                if value is not None:
                    sheet.write_string(number, column, str(value))
    return path


def raw_sheet(path: Path, sheet_xml: str, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A workbook whose sheet XML is exactly ``sheet_xml`` (for cells and dimensions no writer would produce)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", ROOT_RELS)
        archive.writestr("xl/workbook.xml", WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet_xml)
    return path


def sheet_xml(cells: Sequence[tuple[str, str]], dimension: str | None = None) -> str:
    """Sheet XML holding ``(reference, text)`` cells, one row element per cell's row, in order."""
    rows: dict[int, list[str]] = {}
    for reference, text in cells:
        number = int("".join(ch for ch in reference if ch.isdigit()))
        rows.setdefault(number, []).append(f'<c r="{reference}" t="inlineStr"><is><t>{text}</t></is></c>')
    body = "".join(f'<row r="{n}">{"".join(c)}</row>' for n, c in sorted(rows.items()))
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main">{dim}<sheetData>{body}</sheetData></worksheet>'
    )


def grid_xml(rows: Iterable[tuple[int, Sequence[tuple[int, str | None]]]]) -> str:
    """Sheet XML of ``(sheet row, [(0-based column, text)])`` rows, in order: text as inline strings, None as a
    formatted cell without a value (``<c r="A1" s="1"/>``, what a styled blank row holds)."""
    body = []
    for number, cells in rows:
        xml = "".join(
            f'<c r="{letters(column)}{number}" s="1"/>'
            if text is None
            else f'<c r="{letters(column)}{number}" t="inlineStr"><is><t>{escape(text)}</t></is></c>'
            for column, text in cells
        )
        body.append(f'<row r="{number}">{xml}</row>')
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main"><sheetData>{"".join(body)}</sheetData></worksheet>'
    )


def letters(position: int) -> str:
    """Spreadsheet letters of a 0-based column position."""
    text, number = "", position + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        text = chr(ord("A") + remainder) + text
    return text


#: A cell of :func:`write_grid`: ``("s", text)`` a shared string, ``("i", text)`` an inline string, ``("n", "12")``
#: a number, ``("b", "1")`` a boolean, ``("e", "#N/A")`` an error value, ``("f", "")`` a formula's text result,
#: ``("-", "")`` a formatted cell without a value.
GridCell = tuple[str, str]


def write_grid(path: Path, rows: Iterable[tuple[int, Sequence[tuple[int, GridCell]]]]) -> Path:
    """A one-sheet workbook of ``(sheet row, [(0-based column, cell)])`` rows, in the order given, with a
    shared-strings part when some cell is a shared string (the two ways xlsx writers store text)."""
    shared: dict[str, int] = {}
    body = []
    for number, cells in rows:
        xml = []
        for column, (kind, text) in cells:
            reference = f"{letters(column)}{number}"
            if kind == "s":
                xml.append(f'<c r="{reference}" t="s"><v>{shared.setdefault(text, len(shared))}</v></c>')
            elif kind == "i":
                xml.append(f'<c r="{reference}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>')
            elif kind == "f":  # a formula with a text result (empty, as IF(...,"",...) gives)
                xml.append(f'<c r="{reference}" t="str"><f>""&amp;""</f><v>{escape(text)}</v></c>')
            elif kind == "e":
                xml.append(f'<c r="{reference}" t="e"><v>{escape(text)}</v></c>')
            elif kind in ("n", "b"):
                typed = ' t="b"' if kind == "b" else ""
                xml.append(f'<c r="{reference}"{typed}><v>{text}</v></c>')
            else:
                xml.append(f'<c r="{reference}" s="1"/>')
        body.append(f'<row r="{number}">{"".join(xml)}</row>')
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main"><sheetData>{"".join(body)}</sheetData></worksheet>'
    )
    raw_sheet(path, sheet)
    if shared:
        strings = "".join(f'<si><t xml:space="preserve">{escape(text)}</t></si>' for text in shared)
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "xl/sharedStrings.xml",
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/'
                f'spreadsheetml/2006/main" count="{len(shared)}" uniqueCount="{len(shared)}">{strings}</sst>',
            )
    return path
