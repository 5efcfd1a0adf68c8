"""Reports for people: the model card, the training summary and the monitoring summary."""

from modelcycle.reports._card import (
    card_facts,
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
from modelcycle.reports._training import (
    metrics_rows,
    training_summary,
)

__all__ = [
    "card_facts",
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
