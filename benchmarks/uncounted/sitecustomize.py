"""On the path of the table benchmark's "ours, uncounted" runs only: the sheet reader's helper process reads sheets
without counting their rows (``Piece.rows`` None: the run-time row check is skipped), so that the benchmark can time
what the count costs. Never on the path of anything else."""

from airflow_provider_feishu_vc.tables import pieces


def _not_counted(*_: object) -> None:
    return None


pieces._row_numbers = _not_counted  # cut pieces
pieces._row_elements_of = _not_counted  # type: ignore[assignment]  # a sheet read whole
