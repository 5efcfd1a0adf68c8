"""Serving: the prediction service (the champion behind an HTTP API, a new champion picked up
without a restart) and its durable prediction log."""

from modelcycle.logstore import (
    CompactionReport,
    CorruptSegmentError,
    LogRecordError,
    compact,
    logged_models,
    read_feedback,
    read_predictions,
)
from modelcycle.serving._app import (
    API_VERSION,
    Service,
    ServiceApp,
    create_app,
    create_service_app,
    decode_json,
)
from modelcycle.serving._auth import ensure_token_file, load_tokens, token_matches
from modelcycle.serving._batcher import MicroBatcher
from modelcycle.serving._catalog import Catalog, Slot
from modelcycle.serving._experiment import Analysis, Guardrail, analyse
from modelcycle.serving._fast import (
    PARITY_TOLERANCE,
    FastPredictor,
    build_fast_predictor,
    check_parity,
    parity_rows,
)
from modelcycle.serving._ids import ID_PATTERN, IdFactory, id_millis
from modelcycle.serving._log import (
    LogClosedError,
    LogOverloaded,
    LogWriteError,
    PredictionLog,
)
from modelcycle.serving._metrics import MULTIPROC_ENV, Metrics, create_metrics, render_metrics
from modelcycle.serving._model import Predictions, ServedModel, load_served
from modelcycle.serving._routing import (
    SHADOW_SUFFIX,
    ShadowScorer,
    canary_bucket,
    deprecation_headers,
    routing_key,
)
from modelcycle.serving._schema import (
    Batch,
    Feature,
    InputSchema,
    NonFinite,
    RequestRefused,
    build_schema,
    learned_categories,
)
from modelcycle.serving._server import (
    APP_FACTORY,
    THREAD_ENV,
    announce,
    check_models,
    prepare_environment,
    serve,
)
from modelcycle.serving._settings import (
    ENV_PREFIX,
    TOKENS_ENV,
    ServeSettings,
    read_settings,
)

__all__ = [
    "API_VERSION",
    "APP_FACTORY",
    "ENV_PREFIX",
    "ID_PATTERN",
    "MULTIPROC_ENV",
    "PARITY_TOLERANCE",
    "SHADOW_SUFFIX",
    "THREAD_ENV",
    "TOKENS_ENV",
    "Analysis",
    "Batch",
    "Catalog",
    "CompactionReport",
    "CorruptSegmentError",
    "FastPredictor",
    "Feature",
    "Guardrail",
    "IdFactory",
    "InputSchema",
    "LogClosedError",
    "LogOverloaded",
    "LogRecordError",
    "LogWriteError",
    "Metrics",
    "MicroBatcher",
    "NonFinite",
    "PredictionLog",
    "Predictions",
    "RequestRefused",
    "ServeSettings",
    "ServedModel",
    "Service",
    "ServiceApp",
    "ShadowScorer",
    "Slot",
    "analyse",
    "announce",
    "build_fast_predictor",
    "build_schema",
    "canary_bucket",
    "check_models",
    "check_parity",
    "compact",
    "create_app",
    "create_metrics",
    "create_service_app",
    "decode_json",
    "deprecation_headers",
    "ensure_token_file",
    "id_millis",
    "learned_categories",
    "load_served",
    "load_tokens",
    "logged_models",
    "parity_rows",
    "prepare_environment",
    "read_feedback",
    "read_predictions",
    "read_settings",
    "render_metrics",
    "routing_key",
    "serve",
    "token_matches",
]
