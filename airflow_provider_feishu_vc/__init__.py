"""Apache Airflow provider for Feishu / Lark video-conference (VC) exports."""

from __future__ import annotations

__version__ = "0.1.0"
