"""On the path of the table benchmark's "ours, uncounted" runs only: the sheet reader's helper process reads sheets
without counting their rows and cells (``Piece.rows`` None: the run-time checks are skipped), so that the benchmark
can time what the counts cost. Never on the path of anything else."""

from airflow_provider_feishu_vc.tables import counting


def _not_counted(*_: object) -> None:
    return None


def _nothing_counted(*_: object) -> tuple[None, None]:
    return None, None


counting._elements = _not_counted  # cut pieces: neither their rows nor their cells are counted
counting._row_elements_of = _nothing_counted  # type: ignore[assignment]  # a sheet read whole
