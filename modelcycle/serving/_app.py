"""The HTTP API: predictions (champion and pinned), feedback, model facts, health, metrics.

FastAPI for the OpenAPI page and the light routes; the hot routes are plain Starlette routes
(see `_hot_routes`) that read the raw body, parse it with orjson, check it against the schema
derived from the version's own config (a pydantic body model would validate the same rows
twice) and answer with orjson bytes. Every refusal is one JSON object
`{"error": {"kind", "message", "problems"?}}` naming rows and fields, never a traceback or a
file path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from modelcycle.registry import Registry
from modelcycle.serving._auth import load_tokens, token_matches
from modelcycle.serving._batcher import MicroBatcher
from modelcycle.serving._catalog import Catalog
from modelcycle.serving._ids import ID_PATTERN, IdFactory
from modelcycle.serving._metrics import Metrics, create_metrics, render_metrics
from modelcycle.serving._model import ServedModel, class_named
from modelcycle.serving._routing import (
    ShadowScorer,
    choose_canary,
    deprecation_headers,
    predict_canary,
)
from modelcycle.serving._schema import NonFinite, RequestRefused
from modelcycle.serving._settings import ServeSettings, read_settings
from modelcycle.settings import get_settings, privacy_key
from modelcycle.utils import keyed_hash

logger = logging.getLogger("modelcycle.serving")

API_VERSION = "v1"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ROWS_BODY = {
    "description": "Rows to predict: `rows` (a list of objects, one per row) or `columns` "
    "(an object of equal-length lists). Each model's row schema is at GET /v1/models/{name}.",
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
                        "required": ["rows"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {
                            "columns": {
                                "type": "object",
                                "additionalProperties": {"type": "array"},
                            }
                        },
                        "required": ["columns"],
                        "additionalProperties": False,
                    },
                ]
            },
            "example": {"rows": [{"age": 41, "prestg10": 47, "childs": 2}]},
        }
    },
}
_FEEDBACK_BODY = {
    "description": "True outcomes of earlier predictions, by prediction id.",
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "label": {}},
                    "required": ["id", "label"],
                    "additionalProperties": False,
                },
            }
        }
    },
}


class Service:
    """What one worker holds: settings, the champion catalog, the batcher, the log."""

    def __init__(
        self,
        settings: ServeSettings,
        log_factory: Any = None,
        overloaded: type[Exception] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics: Metrics = create_metrics()
        self.tokens = load_tokens(settings)
        self.registry = Registry(get_settings().registry_url)
        self.catalog = Catalog(
            self.registry,
            list(settings.models),
            self.metrics,
            settings.pii,
            settings.pinned_cache,
            settings.compiled,
            settings.fast_path,
        )
        self.batcher = MicroBatcher(
            settings.max_batch_rows, settings.max_wait_ms, settings.threads, self.metrics
        )
        self.ids = IdFactory()
        self.privacy_key = privacy_key() if settings.pseudonymise_subject_keys else None
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"
        # Unique per live process and across restarts: the log's segment names carry it.
        self.worker_id = f"{host}-{os.getpid()}-{self.ids.new_ids(1)[0][-12:]}"
        if log_factory is None:
            from modelcycle.serving._log import LogOverloaded, PredictionLog

            log_factory, overloaded = PredictionLog, LogOverloaded
        self.overloaded: type[Exception] = overloaded or RuntimeError
        self.log = log_factory(
            settings.resolved_log_root,
            self.worker_id,
            durability=settings.durability,
            max_pending=settings.log_max_pending,
            max_batch_wait_ms=settings.log_batch_wait_ms,
            segment_max_seconds=settings.log_segment_seconds,
        )
        self._poller: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self.shadow = ShadowScorer(self)

    async def start(self) -> None:
        self.log.start()
        self.batcher.start()
        self.shadow.start()
        await asyncio.to_thread(self.catalog.poll)
        if not self.catalog.slots:
            logger.warning("no model to serve: none named and none has a champion yet")
        self._poller = asyncio.get_running_loop().create_task(self._follow())
        if self.settings.compact_seconds > 0:
            self._compactor = asyncio.get_running_loop().create_task(self._compact_regularly())

    async def stop(self) -> None:
        for task in (self._poller, self._compactor):
            if task is not None:
                task.cancel()
        await self.shadow.drain(timeout=5.0)
        await self.shadow.stop()
        await self.batcher.stop()
        await asyncio.to_thread(self.log.close)
        self.registry.close()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await asyncio.to_thread(self.catalog.poll)
            self.observe_log()

    async def _compact_regularly(self) -> None:
        while True:
            await asyncio.sleep(self.settings.compact_seconds)
            await asyncio.to_thread(self.compact_log)

    def compact_log(self) -> None:
        """Move sealed segments of every served model into Parquet; never raises (a failed
        compaction leaves its segments in place, and the next one retries them)."""
        from modelcycle.logstore import compact

        for name in list(self.catalog.slots):
            try:
                report = compact(self.settings.resolved_log_root, name)
            except Exception as exc:
                self.metrics.errors.labels(name, "compaction").inc()
                logger.error("prediction log: compaction of %s failed: %s", name, exc)
                continue
            self.metrics.compacted.labels(name, "predictions").inc(report.predictions)
            self.metrics.compacted.labels(name, "feedback").inc(report.feedback)
            for problem in report.refused:
                self.metrics.errors.labels(name, "compaction").inc()
                logger.error("prediction log: compaction refused %s", problem)

    def observe_log(self) -> None:
        self.metrics.log_pending.set(self.log.pending())
        self.metrics.log_at_risk.set(self.log.at_risk())

    # -- request steps -----------------------------------------------------------------------

    def authorise(self, request: Request) -> None:
        if self.settings.insecure_no_auth:
            return
        if not token_matches(request.headers.get("authorization"), self.tokens):
            raise RequestRefused(
                401, "auth", "missing or wrong bearer token (Authorization: Bearer <token>)"
            )

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        return decode_json(b"".join(chunks))

    async def predict(self, request: Request, name: str, version: int | None) -> Response:
        started = time.perf_counter()
        route = "predict" if version is None else "pinned"
        self.batcher.in_flight += 1
        try:
            self.authorise(request)
            headers: dict[str, str] = {}
            if version is None:
                model = self.catalog.champion(name)
            else:
                notices = self.catalog.routing(name).deprecations
                headers = deprecation_headers(notices.get(version))  # 410 after the sunset
                model = await self.catalog.pinned(name, version)
            payload = await self.read_json(request)
            request_id = _request_id(request, self.ids)
            routing = self.catalog.routing(name)
            canary = choose_canary(routing, payload, request_id) if version is None else None
            if canary is None:
                batch = model.schema.parse(payload, self.settings.max_rows_per_request)
            if self.log.pending() >= self.settings.log_max_pending:
                raise _overloaded()
        finally:
            self.batcher.in_flight -= 1
        role = "champion" if version is None else "pinned"
        if canary is not None:
            model, batch, predictions, role = await predict_canary(
                self, model, canary, payload, request_id
            )
        else:
            predictions = await self.batcher.predict(model, batch)
        latency_ms = (time.perf_counter() - started) * 1000
        ids = self.ids.new_ids(batch.size)
        now = datetime.now(UTC).isoformat()
        out = []
        records = []
        for row in range(batch.size):
            outputs: dict[str, Any] = {"label": predictions.labels[row]}
            if predictions.probabilities is not None:
                outputs["probabilities"] = predictions.probabilities[row]
            records.append(
                {
                    "id": ids[row],
                    "time": now,
                    "model": model.name,
                    "version": model.version,
                    "request_id": request_id,
                    "role": role,
                    "inputs": self.logged_inputs(model, batch.inputs(row)),
                    "outputs": outputs,
                    "latency_ms": latency_ms,
                    "flags": batch.flags[row],
                }
            )
            out.append({"id": ids[row], **outputs, "flags": batch.flags[row]})
        await self._durable(self.log.submit_predictions, records, model.name)
        if role == "champion" and routing.shadow is not None:
            self.shadow.offer(routing.shadow, payload, ids, request_id, now)  # after the answer
        labels = (model.name, str(model.version))
        self.metrics.rows.labels(*labels).inc(batch.size)
        self.metrics.requests.labels(*labels, route, "200").inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        body = {
            "model": model.name,
            "version": model.version,
            "role": role,
            "request_id": request_id,
            "predictions": out,
        }
        if batch.dropped_pii:
            body["dropped_pii"] = batch.dropped_pii
        return _json(200, body, {"x-request-id": request_id, **headers})

    def logged_inputs(self, model: ServedModel, inputs: dict[str, Any]) -> dict[str, Any]:
        """A row's inputs as logged: subject keys as their keyed hash when so configured."""
        if self.privacy_key is None:
            return inputs
        keys = set(model.config.subject_keys)
        return {
            k: keyed_hash(self.privacy_key, k, v) if k in keys and v is not None else v
            for k, v in inputs.items()
        }

    async def feedback(self, request: Request, name: str) -> Response:
        self.authorise(request)
        self.catalog.champion(name)  # 404 for a model not served, 503 before one is loaded
        items = await self.read_json(request)
        checked = _check_feedback_items(items, self.settings.max_rows_per_request)
        ids = sorted({item["id"] for item in checked if "id" in item and "message" not in item})
        known = await asyncio.to_thread(self.log.known_ids, name, ids) if ids else {}
        classes = await self._answering_classes(name, {int(v["version"]) for v in known.values()})
        now = datetime.now(UTC).isoformat()
        results, records, seen = [], [], {}
        for index, item in enumerate(checked):
            result = _judge_feedback(index, item, name, known, classes, seen)
            results.append(result)
            if result["status"] == "recorded":
                records.append(
                    {"id": item["id"], "label": result["label"], "time": now, "model": name}
                )
        if records:
            await self._durable(self.log.submit_feedback, records, name)
        refused = sum(r["status"] == "refused" for r in results)
        status = 422 if refused == len(results) else 200
        self.metrics.requests.labels(name, "", "feedback", str(status)).inc()
        if status == 422:
            self.metrics.errors.labels(name, "feedback").inc()
        body = {
            "model": name,
            "recorded": sum(r["status"] == "recorded" for r in results),
            "duplicates": sum(r["status"] == "duplicate" for r in results),
            "refused": refused,
            "items": results,
        }
        if status == 422:
            first = next(r for r in results if r["status"] == "refused")
            body = {
                "error": {
                    "kind": "validation",
                    "message": f"every feedback item refused; item {first['index']}: "
                    f"{first['message']}",
                    "problems": results,
                }
            }
        return _json(status, body)

    async def _answering_classes(
        self, name: str, versions: set[int]
    ) -> dict[int, tuple[Any, ...] | str | None]:
        """Version -> its classes (None for a regressor), or why they cannot be read."""
        found: dict[int, tuple[Any, ...] | str | None] = {}
        for version in sorted(versions):
            try:
                found[version] = await self.catalog.classes_of(name, version)
            except Exception as exc:
                logger.error("feedback: classes of %s v%d unreadable: %s", name, version, exc)
                found[version] = f"version {version}, which answered it, cannot be read"
        return found

    async def _durable(self, submit: Any, records: list[dict[str, Any]], model: str) -> None:
        """Hand records to the log and wait until it says they are durable (or queued)."""
        try:
            future = submit(records)
        except self.overloaded:
            raise _overloaded() from None
        try:
            await asyncio.wrap_future(future)
        except self.overloaded:
            raise _overloaded() from None
        except Exception as exc:
            logger.error("prediction log failed for %s: %s", model, exc)
            raise RequestRefused(
                503,
                "log_failed",
                "the prediction log could not record this answer, so it is not given; retry",
            ) from None

    def refusal(self, request: Request, exc: RequestRefused) -> Response:
        """The JSON answer to a refused request, counted in the metrics."""
        name = request.path_params.get("name", "")
        self.metrics.errors.labels(name, exc.kind).inc()
        route = _route(request.url.path)
        if route:
            self.metrics.requests.labels(name, "", route, str(exc.status)).inc()
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return _json(exc.status, exc.body(), headers)

    def internal_error(self, request: Request) -> Response:
        """An unexpected failure: logged with its traceback here, never sent to the client."""
        name = request.path_params.get("name", "")
        self.metrics.errors.labels(name, "internal").inc()
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return _json(
            500, {"error": {"kind": "internal", "message": "internal error; see the service log"}}
        )

    def model_facts(self, name: str) -> dict[str, Any]:
        model = self.catalog.champion(name)
        return {
            "model": model.name,
            "version": model.version,
            "task": model.config.task.value,
            "classes": list(model.classes) if model.classes is not None else None,
            "loaded_at": model.loaded_at.isoformat(),
            "description": model.config.description,
            "intended_use": model.config.intended_use,
            "lineage": model.lineage(),
            "input_schema": model.schema.json_schema(),
            "pii_columns": sorted(model.schema.pii),
            "fast_path": {"on": model.fast is not None, "reason": model.fast_reason},
            "limits": {
                "max_rows_per_request": self.settings.max_rows_per_request,
                "max_body_bytes": self.settings.max_body_bytes,
            },
        }


def create_app(
    settings: ServeSettings | None = None,
    log_factory: Any = None,
    overloaded: type[Exception] | None = None,
) -> FastAPI:
    """The ASGI app of one worker; uvicorn calls it (an app factory) in each worker process.

    `log_factory` and `overloaded` replace the prediction log (its class and its overload
    error) for tests that run the app in process; the service itself always uses the real one.
    """
    settings = settings or read_settings()
    service = Service(settings, log_factory, overloaded)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="modelcycle prediction service",
        version=API_VERSION,
        description="Predictions from the registry's champion (or a pinned version), each "
        "answer recorded in the prediction log before it is sent. Send "
        "`Authorization: Bearer <token>` on every /v1 route.",
        lifespan=lifespan,
    )
    app.state.service = service
    _routes(app, service)
    _hot_routes(app, service)
    _handlers(app, service)
    return app


_PREDICT_PATH = re.compile(r"/v1/models/(?P<name>[^/]+)/(?:versions/(?P<version>[0-9]+)/)?predict")


class ServiceApp:
    """What uvicorn runs: prediction requests go straight to the service; everything else
    (feedback, model facts, health, metrics, the OpenAPI page, lifespan) to the FastAPI app.

    FastAPI's middleware stack and router cost about half of the event loop's time per
    prediction under load (py-spy on one worker at concurrency 32, single rows: 1,357 samples
    in the ASGI app, 721 of them in the handler); the event loop's time per request is what
    bounds throughput and queueing once micro-batching shares the model call.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.service: Service = app.state.service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PREDICT_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._predict(scope, receive, send, match)
                return
        await self.app(scope, receive, send)

    async def _predict(self, scope: Any, receive: Any, send: Any, match: re.Match[str]) -> None:
        name, version = match["name"], match["version"]
        scope["path_params"] = {"name": name} | ({} if version is None else {"version": version})
        request = Request(scope, receive)
        try:
            response = await self.service.predict(
                request, name, None if version is None else int(version)
            )
        except RequestRefused as exc:
            response = self.service.refusal(request, exc)
        except Exception:
            response = self.service.internal_error(request)
        await response(scope, receive, send)


def create_service_app() -> ServiceApp:
    """The app factory `modelcycle serve` gives uvicorn (one per worker process)."""
    return ServiceApp(create_app())


def _hot_routes(app: FastAPI, service: Service) -> None:
    """The prediction and feedback routes again, as plain Starlette routes matched first.

    FastAPI's per-request work (parameter and dependency resolution) cost 0.15-0.2 ms per
    request against Starlette's 0.03-0.06 ms, measured through the ASGI interface on this
    machine; with micro-batching, the event loop's time per request is what bounds throughput
    under concurrency (wrk, one worker, single rows: Starlette 1.15x FastAPI's requests/s at
    concurrency 8, 1.26x at 1, in one run; within noise in another). The FastAPI routes stay
    for the OpenAPI page and answer only what these do not match (a version that is not an
    integer gets FastAPI's 422).
    """

    async def predict(request: Request) -> Response:
        return await service.predict(request, request.path_params["name"], None)

    async def predict_pinned(request: Request) -> Response:
        params = request.path_params
        return await service.predict(request, params["name"], params["version"])

    async def feedback(request: Request) -> Response:
        return await service.feedback(request, request.path_params["name"])

    app.router.routes[0:0] = [
        Route("/v1/models/{name}/predict", predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version:int}/predict", predict_pinned, methods=["POST"]),
        Route("/v1/models/{name}/feedback", feedback, methods=["POST"]),
    ]


def _routes(app: FastAPI, service: Service) -> None:
    @app.post(
        "/v1/models/{name}/predict",
        summary="Predict with the champion",
        openapi_extra={"requestBody": _ROWS_BODY},
        tags=["predict"],
    )
    async def predict(name: str, request: Request) -> Response:
        return await service.predict(request, name, None)

    @app.post(
        "/v1/models/{name}/versions/{version}/predict",
        summary="Predict with a pinned version (410 once it is retired)",
        openapi_extra={"requestBody": _ROWS_BODY},
        tags=["predict"],
    )
    async def predict_pinned(name: str, version: int, request: Request) -> Response:
        return await service.predict(request, name, version)

    @app.post(
        "/v1/models/{name}/feedback",
        summary="Record true outcomes of earlier predictions (idempotent per id)",
        openapi_extra={"requestBody": _FEEDBACK_BODY},
        tags=["feedback"],
    )
    async def feedback(name: str, request: Request) -> Response:
        return await service.feedback(request, name)

    @app.get("/v1/models", summary="Models served and their versions", tags=["models"])
    async def models(request: Request) -> Response:
        service.authorise(request)
        served = {
            name: (slot.current.version if slot.current else None)
            for name, slot in service.catalog.slots.items()
        }
        return _json(200, {"models": served})

    @app.get(
        "/v1/models/{name}",
        summary="Serving version, lineage and the input JSON schema",
        tags=["models"],
    )
    async def model(name: str, request: Request) -> Response:
        service.authorise(request)
        return _json(200, service.model_facts(name))

    @app.get("/healthz", summary="The process answers", tags=["operations"])
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz", summary="Every served model has a verified version", tags=["operations"])
    async def readyz() -> Response:
        slots = service.catalog.slots
        versions = {n: (s.current.version if s.current else None) for n, s in slots.items()}
        ready = service.catalog.ready
        return _json(200 if ready else 503, {"ready": ready, "models": versions})

    @app.get("/metrics", summary="Prometheus metrics of every worker", tags=["operations"])
    async def metrics() -> Response:
        service.observe_log()
        data, content_type = await asyncio.to_thread(render_metrics, service.metrics)
        return Response(data, media_type=content_type)


def _handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> Response:
        return service.refusal(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return _json(exc.status_code, {"error": {"kind": "http", "message": message}})

    @app.exception_handler(RequestValidationError)
    async def bad_path(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
            for e in exc.errors()
        ]
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return _json(422, {"error": {"kind": "validation", "message": text, "problems": problems}})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        return service.internal_error(request)


# -- helpers ---------------------------------------------------------------------------------


def decode_json(body: bytes) -> Any:
    """orjson first; on failure Python's parser, which also reads NaN/Infinity tokens (so they
    can be refused by row and field, 422) and reports where a malformed body breaks (400)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRefused(
            400, "malformed_json", f"body: not UTF-8 text (byte {exc.start})"
        ) from None
    try:
        return json.loads(text, parse_constant=lambda token: NonFinite(float(token)))
    except json.JSONDecodeError as exc:
        raise RequestRefused(
            400,
            "malformed_json",
            f"body: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        ) from None


def _check_feedback_items(items: Any, limit: int) -> list[dict[str, Any]]:
    """Shape checks per item; an item that fails carries its message instead of being refused
    with the whole request."""
    if not isinstance(items, list):
        raise RequestRefused(
            422, "validation", 'body: expected a list of {"id": ..., "label": ...} objects'
        )
    if not items:
        raise RequestRefused(422, "validation", "body: empty list; send at least one item")
    if len(items) > limit:
        raise RequestRefused(
            413, "too_many_rows", f"body: {len(items)} items, more than the limit of {limit}"
        )
    checked = []
    for item in items:
        if not isinstance(item, dict):
            checked.append({"message": "expected an object with 'id' and 'label'"})
            continue
        extra = sorted(set(item) - {"id", "label"})
        missing = sorted({"id", "label"} - set(item))
        if extra or missing:
            parts = [
                f"unknown field(s) {extra}" if extra else "",
                f"missing {missing}" if missing else "",
            ]
            checked.append({**item, "message": "; ".join(p for p in parts if p)})
            continue
        if not isinstance(item["id"], str) or not ID_PATTERN.match(item["id"]):
            checked.append({**item, "message": "field 'id': not a prediction id of this service"})
            continue
        checked.append(dict(item))
    return checked


def _judge_feedback(
    index: int,
    item: dict[str, Any],
    name: str,
    known: dict[str, dict[str, Any]],
    classes: dict[int, tuple[Any, ...] | str | None],
    seen: dict[str, Any],
) -> dict[str, Any]:
    """One item's fate; its label is checked against the classes of the version that
    answered that prediction, not the champion's."""
    result: dict[str, Any] = {"index": index, "id": item.get("id")}
    if "message" in item:
        return {**result, "status": "refused", "message": item["message"]}
    prediction_id = item["id"]
    if prediction_id not in known:
        return {
            **result,
            "status": "refused",
            "message": f"field 'id': no prediction {prediction_id} from model {name!r}",
        }
    version = int(known[prediction_id]["version"])
    answering = classes.get(version)
    if isinstance(answering, str):
        return {**result, "status": "refused", "message": f"field 'id': {answering}"}
    label = _feedback_label(item["label"], answering)
    if label is _INVALID:
        expected = list(answering) if answering is not None else "a finite number"
        return {
            **result,
            "status": "refused",
            "message": f"field 'label': {item['label']!r} is not one of the classes {expected} "
            f"of version {version}, which answered this prediction",
        }
    earlier = seen.get(prediction_id, known[prediction_id].get("feedback"))
    if earlier is not None:
        if str(earlier) == str(label):
            return {**result, "status": "duplicate", "label": label}
        return {
            **result,
            "status": "refused",
            "message": f"field 'label': feedback for {prediction_id} is already recorded as "
            f"{earlier!r}",
        }
    seen[prediction_id] = label
    return {**result, "status": "recorded", "label": label}


_INVALID = object()


def _feedback_label(value: Any, classes: tuple[Any, ...] | None) -> Any:
    if classes is None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _INVALID
        return float(value) if math.isfinite(value) else _INVALID
    if isinstance(value, NonFinite | dict | list) or value is None:
        return _INVALID
    label = class_named(classes, value)
    return _INVALID if label is None else label


def _route(path: str) -> str | None:
    """The metrics label of a /v1 route that was refused (the version is not known then)."""
    if path.endswith("/feedback"):
        return None  # counted by the feedback handler, which answers per item
    if "/versions/" in path and path.endswith("/predict"):
        return "pinned"
    return "predict" if path.endswith("/predict") else None


def _request_id(request: Request, ids: IdFactory) -> str:
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return ids.new_ids(1)[0]


def _too_large(size: int, limit: int) -> RequestRefused:
    return RequestRefused(
        413, "too_large", f"body: {size} bytes or more, above the limit of {limit} bytes"
    )


def _overloaded() -> RequestRefused:
    return RequestRefused(
        503,
        "overloaded",
        "the prediction log is behind; nothing was recorded or answered, retry shortly",
    )


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )
