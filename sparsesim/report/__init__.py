"""The report: one fixed, versioned schema and its renderings (terminal table, JSON, CSV)."""

from sparsesim.report.report import REPORT_SCHEMA_VERSION, Report, compare_reports

__all__ = ["REPORT_SCHEMA_VERSION", "Report", "compare_reports"]
