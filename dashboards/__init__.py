"""Everything read back from MLflow: the LR scaling-law fit, lesson plots, comparison tables, the HTML report.

Kept import-light: the CLI imports ``DashboardError`` before it knows which verb runs.
"""


class DashboardError(ValueError):
    """Bad input to a read-back command (no such experiment, no runs, a metric nobody logged): exit 2."""
