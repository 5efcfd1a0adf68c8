"""Reports for people (the model card, the training and monitoring summaries) and the one
record per run they are derived from."""

from modelcycle.reports._bom import SPEC_VERSION, cyclonedx_bom
from modelcycle.reports._card import (
    card_facts,
    cleaning_lines,
    gate_report,
    gate_table,
    read_card_facts,
    registry_view,
    render_card,
)
from modelcycle.reports._docs import (
    HEADINGS,
    Document,
    render_html,
    render_markdown,
    technical_documentation,
)
from modelcycle.reports._evidence import (
    Evidence,
    MonitoringRecord,
    VersionRecords,
    collect_records,
)
from modelcycle.reports._monitoring import (
    drift_table,
    monitoring_markdown,
)
from modelcycle.reports._monitoring_run import (
    HTML_REPORT,
    MonitoringRun,
)
from modelcycle.reports._testscore import (
    RUBRIC,
    TestResult,
    TestScore,
    ml_test_score,
    test_score_markdown,
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
    "HEADINGS",
    "HTML_REPORT",
    "MODEL_FILE",
    "PROMOTION_REASON",
    "RUBRIC",
    "SPEC_VERSION",
    "Document",
    "Evidence",
    "MonitoringRecord",
    "MonitoringRun",
    "RunContents",
    "TestResult",
    "TestScore",
    "TrainingRun",
    "VersionRecords",
    "card_facts",
    "cleaning_lines",
    "collect_records",
    "cyclonedx_bom",
    "drift_table",
    "gate_report",
    "gate_table",
    "metrics_rows",
    "ml_test_score",
    "monitoring_markdown",
    "read_card_facts",
    "registry_view",
    "render_card",
    "render_html",
    "render_markdown",
    "technical_documentation",
    "test_score_markdown",
    "training_summary",
]
