"""Reports: the self-contained HTML impact report and its per-dialogue case reports.

Interface for other outputs:

- :func:`report_tables` registers every number of the pooled report and of every
  per-dialogue page in one :class:`~.disclose.Publication` (pass ``publication=`` to register
  into one you already hold, e.g. the dashboard's, for joint disclosure control);
- :func:`render_reports` protects it (unless already protected) and writes the pooled report
  and ``dialogues/<id>.html``; :func:`render_report` is the same, returning the pooled path.
"""

from .build import (
                    ReportPages,
                    ReportTables,
                    render_report,
                    render_reports,
                    report_tables,
                    suppress_count,
)

__all__ = ["ReportPages", "ReportTables", "render_report", "render_reports", "report_tables",
           "suppress_count"]
