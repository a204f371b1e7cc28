"""The HTTP app: thin routers over :class:`~nexus_llm.serve.http.serving.Serving`, built by :func:`create_app`.

The factory takes the engine, so tests (and other backends) hand in their own. Middleware, outermost
first: observation (metrics, EMF), API keys, body limits; then FastAPI's validation and the routers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nexus_llm import __version__
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.base import Engine
from nexus_llm.serve.http import schemas
from nexus_llm.serve.http.admission import Admission
from nexus_llm.serve.http.auth import APIKeyMiddleware, APIKeys
from nexus_llm.serve.http.errors import install_error_handlers
from nexus_llm.serve.http.metrics import ServeMetrics
from nexus_llm.serve.http.middleware import BodyMiddleware, ObserveMiddleware
from nexus_llm.serve.http.serving import ClientGone, Serving

PLAYGROUND = Path(__file__).with_name("playground")
"""The playground's static files (index.html, playground.js, playground.css), shipped as package data."""


def create_app(
    engine: Engine,
    settings: ServeConfig | None = None,
    api_keys: Iterable[str] = (),
    *,
    manage_engine: bool = True,
) -> FastAPI:
    """An app serving ``engine``. With ``manage_engine`` the app starts the engine (model loading in the
    background, so /health answers 503 meanwhile) and shuts it down after the server drains."""
    settings = settings or ServeConfig()
    admission = Admission(settings.max_concurrent, settings.max_queue, settings.queue_timeout_s)
    serving = Serving(engine, settings, admission, engine.model_name)
    metrics = ServeMetrics(engine.stats, lambda: admission.waiting, emf=settings.emf)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if manage_engine:
            engine.start()
        yield
        serving.draining = True
        if manage_engine:
            await asyncio.to_thread(engine.shutdown, settings.drain_timeout_s)

    app = FastAPI(title="Nexus LLM", version=__version__, lifespan=lifespan)
    app.state.serving = serving
    app.state.metrics = metrics
    app.state.engine = engine
    install_error_handlers(app)

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 once the model is loaded and the engine runs; 503 while loading, failed or draining."""
        if serving.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not engine.is_ready():
            stats = engine.stats()
            state = "failed" if stats.error else "loading"
            return JSONResponse({"status": state, "error": stats.error}, status_code=503)
        return JSONResponse({"status": "ok", "model": serving.model_name})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(serving.models())

    @app.post("/generate", response_model=schemas.GenerateResponse)
    async def generate(body: schemas.GenerateRequest, request: Request) -> Response:
        """The guide's original endpoint: ``prompt``, ``max_tokens``, ``temperature``, ``top_p``."""
        return await serving.generate(body, request)

    @app.post("/v1/completions")
    async def completions(body: schemas.CompletionRequest, request: Request) -> Response:
        return await serving.completions(body, request)

    @app.post("/v1/chat/completions")
    async def chat(body: schemas.ChatCompletionRequest, request: Request) -> Response:
        return await serving.chat(body, request)

    @app.post("/tokenize")
    async def tokenize(body: schemas.TokenizeRequest) -> JSONResponse:
        """vLLM's tokenizer endpoint: ``prompt`` or ``messages`` to token ids."""
        return JSONResponse(await serving.tokenize(body))

    @app.post("/detokenize")
    async def detokenize(body: schemas.DetokenizeRequest) -> JSONResponse:
        """vLLM's: token ids to text."""
        return JSONResponse(await serving.detokenize(body))

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> JSONResponse:
        """vLLM's: special tokens, chat template and context (lm-eval's remote tokenizer reads it)."""
        return JSONResponse(serving.tokenizer_info())

    open_paths = {"/health"} if settings.metrics_auth else {"/health", "/metrics"}
    if settings.playground:
        open_paths.add("/")

        @app.get("/", include_in_schema=False)
        async def playground() -> FileResponse:
            """The chat playground (static files of this package; nothing is loaded from elsewhere)."""
            return FileResponse(PLAYGROUND / "index.html", headers={"Cache-Control": "no-cache"})

        app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    app.add_middleware(BodyMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        APIKeyMiddleware, keys=APIKeys(api_keys), open_paths=frozenset(open_paths),
        open_prefixes=("/playground/",) if settings.playground else (),
    )  # fmt: skip
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    return app
