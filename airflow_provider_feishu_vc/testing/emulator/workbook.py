"""Writing the export workbooks: with XlsxWriter in constant-memory mode (Feishu-shaped files of any length), or,
for download benchmarks that need files of a given size, with a minimal stdlib writer that stores the sheet
uncompressed (the file's size then follows its rows)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets>
</workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
</Relationships>"""
_SHEET_START = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<dimension ref="A1:{last_cell}"/><sheetData>'
)
_SHEET_END = "</sheetData></worksheet>"


def _cell(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<c><v>{value}</v></c>"
    return f'<c t="inlineStr"><is><t xml:space="preserve">{escape(str(value))}</t></is></c>'


def _column(number: int) -> str:
    """Spreadsheet column letters: 1 -> A, 17 -> Q, 35 -> AI."""
    letters = ""
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def write_workbook(path: Path, sheet_name: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write a one-sheet workbook with XlsxWriter, row by row in constant memory; return the data rows written.
    Every cell is text, as Feishu writes its exports (counts and times included)."""
    import xlsxwriter

    count = 0
    with xlsxwriter.Workbook(str(path), {"constant_memory": True, "use_zip64": True}) as workbook:
        sheet = workbook.add_worksheet(sheet_name[:31])
        sheet.write_row(0, 0, list(header))
        for count, row in enumerate(rows, start=1):
            for column, value in enumerate(row):
                if value != "":
                    sheet.write_string(count, column, str(value))
    return count


def write_stored_workbook(
    path: Path,
    sheet_name: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_count: int,
) -> int:
    """Write a one-sheet workbook of ``row_count`` data rows to ``path``, streamed and stored uncompressed (the
    sheet's ``<dimension>`` comes first, so readers such as openpyxl's read-only mode know its size); return the
    rows written."""
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK.format(name=escape(sheet_name, {'"': "&quot;"})))
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_SHEET_START.format(last_cell=f"{_column(len(header))}{row_count + 1}").encode())
            sheet.write(("<row>" + "".join(_cell(h) for h in header) + "</row>").encode())
            for row in rows:
                sheet.write(("<row>" + "".join(_cell(v) for v in row) + "</row>").encode())
                count += 1
            sheet.write(_SHEET_END.encode())
    return count
