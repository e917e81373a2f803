"""``promptsearch report``: one self-contained HTML page about a study.

The page itself (:mod:`~promptsearch.report.page`), what it shows read from the
storage (:mod:`~promptsearch.report.data`), its charts (:mod:`~promptsearch.report.charts`)
and the small SVG layer that draws them (:mod:`~promptsearch.report.svg`).
"""

from __future__ import annotations

from promptsearch.report.page import (
    build_report,
    default_report_path,
    render_report,
    write_report,
)

__all__ = ["build_report", "default_report_path", "render_report", "write_report"]
