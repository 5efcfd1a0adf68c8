"""Reports for people (the model card, the training and monitoring summaries) and the one
record per run they are derived from."""

from modelcycle.reports._card import (
    card_facts,
    cleaning_lines,
    gate_report,
    gate_table,
    read_card_facts,
    registry_view,
    render_card,
)
from modelcycle.reports._monitoring import (
    drift_table,
    monitoring_markdown,
)
from modelcycle.reports._monitoring_run import (
    HTML_REPORT,
    MonitoringRun,
)
from modelcycle.reports._training import (
    metrics_rows,
    training_summary,
)
from modelcycle.reports._training_run import (
    MODEL_FILE,
    PROMOTION_REASON,
    RunContents,
    TrainingRun,
)

__all__ = [
    "HTML_REPORT",
    "MODEL_FILE",
    "PROMOTION_REASON",
    "MonitoringRun",
    "RunContents",
    "TrainingRun",
    "card_facts",
    "cleaning_lines",
    "drift_table",
    "gate_report",
    "gate_table",
    "metrics_rows",
    "monitoring_markdown",
    "read_card_facts",
    "registry_view",
    "render_card",
    "training_summary",
]
