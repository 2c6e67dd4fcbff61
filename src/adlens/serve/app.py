"""The HTTP shell over :class:`adlens.serve.service.Service` (FastAPI; OpenAPI docs at ``/docs``).

Routes (request / response bodies are the pydantic models below):

- ``POST /v1/score``     candidates x context -> quality scores and the features used
- ``POST /v1/select``    context + candidate ids -> chosen creative, propensity, decision id, components
- ``POST /v1/feedback``  decision id + event (impression | click | conversion | dwell), idempotent by event id
- ``GET  /v1/arms``      arms' counters and posteriors (``?ids=a,b`` to restrict)
- ``GET  /healthz``      liveness + model / policy in use (no API key needed)
- ``GET  /metrics``      Prometheus text format

Errors are JSON ``{"detail": message}``: 400/422 bad input, 401 missing or wrong API key, 404 unknown
id, 409 event id reused for another event, 413 body too large, 500 a bug (logged with its traceback).
``/v1/select`` (with a known article or an already-seen text) and ``/v1/feedback`` run on the event
loop (a thread hop would cost as much as the work); featurising a new image or a new free-text
context runs in the thread pool. The shared state is guarded by the service's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from adlens.bandit.state import EventConflict, UnknownDecision, hash_key
from adlens.errors import AdlensError, InvalidInput
from adlens.serve.scoring import UnknownIds
from adlens.serve.service import Service, ServiceClosed

__all__ = ["create_app"]

log = logging.getLogger(__name__)

ROUTES = {"/v1/score", "/v1/select", "/v1/feedback", "/v1/arms", "/healthz", "/metrics"}
OPEN_PATHS = {"/healthz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}


# library errors -> HTTP status (most specific first)
ERROR_STATUS = ((ServiceClosed, 503), (UnknownIds, 404), (UnknownDecision, 404), (EventConflict, 409), (InvalidInput, 422), (AdlensError, 400))


# ---------------------------------------------------------------------------- request models
class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    article_id: str | None = Field(None, max_length=200, description="an article of the workspace")
    text: str | None = Field(None, max_length=200_000, description="the page's text, when it is not in the workspace")


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=200)
    quality: float | None = Field(None, description="your own 1-10 quality score (skips the model)")
    brand_risk: float | None = Field(None, ge=0.0, le=1.0, description="brand-safety risk in [0, 1]")


class NewCreative(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=200)
    image_b64: str = Field(..., description="the creative's image file (JPEG/PNG/WebP/GIF) as base64")
    text: str | None = Field(None, max_length=10_000, description="the ad copy")
    advertiser: str | None = Field(None, max_length=500)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: Context
    candidates: list[str | NewCreative | Candidate] = Field(..., min_length=1)
    include_features: bool = True


class SelectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: Context
    candidates: list[str | Candidate] = Field(..., min_length=1)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(..., min_length=1, max_length=128, description="your id of this event; retries reuse it")
    decision_id: str = Field(..., min_length=1, max_length=64)
    type: Literal["impression", "click", "conversion", "dwell"]
    value: float | None = Field(None, strict=True, description="milliseconds for dwell (a JSON number; "
                                "strings and booleans are refused)")
    occurred_at: datetime | None = None


class _GuardedApp(FastAPI):
    """FastAPI with the guard as the outermost ASGI layer: the lean ``/v1/select`` answers before
    Starlette's middleware stack (error, body-limit and telemetry layers, router) is entered (its
    share of the session-4 saving was not measured apart: below this VM's run-to-run noise).
    Every other request goes on to FastAPI as usual.

    Consequences to know: middleware added later with ``add_middleware`` (CORS, tracing) runs
    *inside* the guard, so the lean select and the guard's own 401/411/413/500 answers skip it;
    FastAPI's OpenTelemetry wrapper does not see them either."""

    guarded: Callable | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.guarded is None:
            await super().__call__(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)

    async def fastapi(self, scope, receive, send) -> None:
        await super().__call__(scope, receive, send)


class _OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _json(obj: Any) -> JSONResponse:
    # the service returns plain JSON types already: skip FastAPI's (slow) jsonable_encoder pass, and
    # encode with orjson (a select answer: ~20 us instead of ~300 us with the json module)
    return _OrjsonResponse(obj)


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that hands over an already read body first, then the real channel's messages."""
    sent = False

    async def receive_():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return receive_


async def _send_json(send, status: int, obj: Any) -> None:
    data = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _validation_message(errors: list[dict]) -> str:
    """Pydantic's errors as one line naming each field: ``candidates.0.quality: ...``; the whole body
    is called "request body" (pydantic names it with an empty path or a JSON character offset)."""
    msgs = []
    for e in errors[:10]:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if e.get("type") == "json_invalid":
            at = f" at character {loc[0]}" if loc else ""
            msgs.append(f"request body: invalid JSON{at} ({e.get('ctx', {}).get('error', e.get('msg'))})")
        elif not loc:
            msgs.append("request body: " + ("a JSON object is required" if e.get("type") == "missing" else str(e.get("msg"))))
        else:
            msgs.append(f"{'.'.join(loc)}: {e.get('msg')}")
    return "; ".join(msgs) or "invalid request"


def _dump(c: Any) -> Any:
    return c.model_dump(exclude_none=True) if isinstance(c, BaseModel) else c


# ---------------------------------------------------------------------------- metrics
class _Metrics:
    """Prometheus counters/histograms in a registry of this app (not the process-global one)."""

    def __init__(self, service: Service):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("adlens_http_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("adlens_http_request_seconds", "request handling time", ["route"],
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5),
                                 registry=self.registry)
        self.decisions = Counter("adlens_decisions", "select decisions", ["policy"], registry=self.registry)
        self.events = Counter("adlens_feedback_events", "feedback events", ["type", "status"], registry=self.registry)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        g = Gauge("adlens_model_info", "quality model in use", ["version"], registry=self.registry)
        g.labels(str(service.scorer.version)).set(1)

    def children(self, route: str, status: int):
        """The (request counter, latency histogram) of a route and status, looked up once: labels()
        validates and locks on every call."""
        key = (route, status)
        got = self._children.get(key)
        if got is None:
            got = self._children[key] = (self.requests.labels(route, str(status)), self.latency.labels(route))
        return got

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# ---------------------------------------------------------------------------- app
def create_app(service: Service, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The FastAPI app over ``service``; API keys (if any are stored) are required on /v1 and /metrics.
    ``on_shutdown`` runs when the server stops (e.g. closing the service)."""

    @asynccontextmanager
    async def lifespan(_app):
        yield
        if on_shutdown is not None:
            on_shutdown()

    app = _GuardedApp(title="adlens", version="1", description="Score ad creatives for a context, choose one with a "
                  "bandit, learn from feedback. Errors are JSON {\"detail\": message}.", lifespan=lifespan)
    metrics = _Metrics(service)
    keys = {"hashes": service.store.active_key_hashes(), "at": time.monotonic()}
    limit = service.config.max_body_bytes

    def key_ok(headers: dict[bytes, bytes]) -> bool:
        if time.monotonic() - keys["at"] > 10:  # pick up added / revoked keys within 10 s
            keys["hashes"], keys["at"] = service.store.active_key_hashes(), time.monotonic()
        if not keys["hashes"]:
            return True
        key = headers.get(b"x-api-key", b"").decode("latin-1") or None
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        return key is not None and hash_key(key) in keys["hashes"]

    def guard(inner):
        """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): size limit, API
        key, per-route request counter and latency histogram."""
        async def asgi(scope, receive, send):
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            t0 = time.perf_counter()
            route = scope["path"]
            headers = dict(scope["headers"])
            n = headers.get(b"content-length")
            status = {"code": None}  # set when the answer starts

            async def send_(msg):
                if msg["type"] == "http.response.start":
                    status["code"] = msg["status"]
                await send(msg)

            try:
                await dispatch(scope, receive, send_, inner, route, headers, n)
            except Exception:  # a bug (here or in a route): logged once, answered as JSON if still possible
                log.exception("%s %s failed", scope["method"], route)
                if status["code"] is None:
                    await _send_json(send_, 500, {"detail": "Internal Server Error"})
                # else the answer had started (FastAPI's error layer sends its 500 and re-raises):
                # nothing more can be sent; uvicorn closes the connection if it was left incomplete
            finally:  # counted whatever happened, 500s included
                label = route if route in ROUTES else "other"  # bounded label set, whatever clients send
                count, latency = metrics.children(label, status["code"] or 500)
                count.inc()
                latency.observe(time.perf_counter() - t0)
        return asgi

    async def dispatch(scope, receive, send_, inner, route, headers, n) -> None:
        if n is not None and not n.isdigit():
            await JSONResponse({"detail": f"Content-Length must be a number of bytes, got {n[:40].decode('latin-1')!r}"},
                               status_code=400)(scope, receive, send_)
        elif n is not None and int(n) > limit:
            await JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)(scope, receive, send_)
        elif scope["method"] == "POST" and n is None:
            await JSONResponse({"detail": "send a Content-Length (chunked bodies are not accepted)"},
                               status_code=411)(scope, receive, send_)
        elif route not in OPEN_PATHS and not key_ok(headers):
            await JSONResponse({"detail": "missing or invalid API key (X-API-Key or Authorization: Bearer)"},
                               status_code=401)(scope, receive, send_)
        elif route == "/v1/select" and scope["method"] == "POST":
            body = await _read_body(receive)
            if not await lean_select(body, send_):  # anything but the plain shape: the FastAPI route
                await inner(scope, _replay(body, receive), send_)
        else:
            await inner(scope, receive, send_)

    async def lean_select(body: bytes, send) -> bool:
        """``/v1/select`` for the plain request shape -- ``{"context": {"article_id": ID} or {"text": T},
        "candidates": [ID, ...]}`` -- without FastAPI's routing and model validation (~1 ms of a
        select's ~3 ms of CPU). Same service call, same answers and error statuses; returns False
        (nothing sent) for any other shape, which the FastAPI route then validates and answers."""
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if type(req) is not dict or len(req) != 2 or type(req.get("candidates")) is not list:
            return False
        ctx, cands = req.get("context"), req["candidates"]
        if type(ctx) is not dict or len(ctx) != 1 or not cands or not all(type(c) is str for c in cands):
            return False
        (k, v), = ctx.items()
        if type(v) is not str or not ((k == "article_id" and len(v) <= 200) or (k == "text" and len(v) <= 200_000)):
            return False
        try:
            if service.fast_path(ctx, cands):  # ~1.5 ms of CPU: on the event loop, no thread hop
                out = service.select(ctx, cands)
            else:
                out = await run_in_threadpool(service.select, ctx, cands)
        except AdlensError as e:
            code = next(c for t, c in ERROR_STATUS if isinstance(e, t))
            await _send_json(send, code, {"detail": str(e)})
            return True
        decisions.inc()
        await _send_json(send, 200, out)
        return True

    decisions = metrics.decisions.labels(service.policy.name)
    app.guarded = guard(app.fastapi)

    def error(status: int):
        async def handler(_request: Request, exc: Exception):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handler

    for exc_type, code in ERROR_STATUS:
        app.add_exception_handler(exc_type, error(code))

    @app.exception_handler(Exception)  # a bug, not bad input: JSON like every other error (the guard logs it)
    async def internal(_request: Request, _exc: Exception):
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation(_request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc.errors())}, status_code=422)

    @app.post("/v1/score", summary="Quality scores of candidates for a context")
    def score(req: ScoreRequest) -> JSONResponse:
        return _json(service.score(_dump(req.context), [_dump(c) for c in req.candidates], req.include_features))

    @app.post("/v1/select", summary="Choose one candidate for a context (bandit) and log the decision")
    async def select(req: SelectRequest) -> JSONResponse:
        ctx, cands = _dump(req.context), [_dump(c) for c in req.candidates]
        if service.fast_path(ctx, cands):  # ~1.5 ms of CPU: on the event loop, no thread hop
            out = service.select(ctx, cands)
        else:  # a new free-text context needs its features computed (tens of ms): thread pool
            out = await run_in_threadpool(service.select, ctx, cands)
        metrics.decisions.labels(service.policy.name).inc()
        return _json(out)

    @app.post("/v1/feedback", summary="Report an event for a decision (idempotent by event_id)")
    async def feedback(req: FeedbackRequest) -> JSONResponse:  # one short transaction
        out = service.feedback(event_id=req.event_id, decision_id=req.decision_id, type=req.type, value=req.value,
                               occurred_at=req.occurred_at)
        metrics.events.labels(req.type, out["status"]).inc()
        return _json(out)

    @app.get("/v1/arms", summary="Arms' counters and posterior CTR")
    def arms(ids: Annotated[str | None, Query(description="comma-separated arm ids")] = None) -> dict[str, Any]:
        sel = None if ids is None else [i for i in ids.split(",") if i]
        return {"arms": service.arms(sel), "totals": service.store.count()}

    @app.get("/healthz", summary="Liveness, model and policy in use")
    def healthz() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prom() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    app.state.service = service
    return app
