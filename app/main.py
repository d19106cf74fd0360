"""``create_app()`` builds the FastAPI app: the API under /api, the pages, /static and error handlers.

Run it with ``cnn-visualiser serve`` (app/cli.py) or ``uvicorn app.main:app``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.api.main import api_router
from app.api.routes.models import document_upload_limit
from app.core.config import Settings, get_settings
from app.core.cpu import limit_blas_threads
from app.core.memory import IdleTrimmer, limit_malloc_arenas
from app.docs_ui import has_local_assets, install_docs
from app.errors import install_error_handlers
from app.middleware import BodyLimitMiddleware
from app.openapi_errors import document_errors
from app.paths import find_dir
from app.security import install_security
from app.services.container import build_services
from app.services.models import ModelStore
from app.services.storage import remove_staging_leftovers
from app.web.pages import router as pages_router

DESCRIPTION = """\
What happens inside a convolutional neural network, over HTTP: the architecture of every model (shapes,
parameters, multiply-accumulates, receptive fields), predictions, every feature map, attention maps,
receptive fields of single units, the output-size arithmetic and a sliding-window playground.

Every endpoint that takes an image also takes a raw input tensor as a `.npy` body
(`Content-Type: application/x-npy`). Every error is JSON `{"detail": "..."}` saying what was wrong and
what would work.
"""


TAGS = [
    {"name": "models", "description": "The built-in and uploaded models: architecture, weights, predictions, "
                                      "activations, tensors in and out, ONNX upload."},
    {"name": "runs", "description": "One forward pass, content-addressed: every node's feature maps as a tiled PNG, "
                                    "raw .npy, or layout and statistics."},
    {"name": "attention", "description": "Which parts of the input drove the decision: CAMs, gradients, occlusion, "
                                         "learned attention."},
    {"name": "receptive fields", "description": "Where one unit looks in the input: box, centre, effective field."},
    {"name": "arithmetic", "description": "The output-size formula with your numbers, and why it must be whole."},
    {"name": "architecture", "description": "Shapes, parameters, MACs and receptive fields of any graph spec."},
    {"name": "playground", "description": "A convolution or pooling on a small grid, every window step."},
    {"name": "learned", "description": "What the network learned: each channel's top examples and feature "
                                       "visualisation, projections and linear probes of the representation, "
                                       "backpropagation's gradients and one SGD step, adversarial examples."},
    {"name": "jobs", "description": "Long analyses (top examples, feature visualisation, projections, probes) run "
                                   "as background jobs: progress as server-sent events, then the result and files."},
    {"name": "health", "description": "Is the server up."},
]


MULTIPART_SLACK = 1024 * 1024  # form fields and multipart boundaries around the file itself


def body_limits(settings: Settings):
    """``scope -> (limit, what)``: ONNX uploads may be larger than images and tensors."""

    def limit_for(scope: dict) -> tuple[int, str]:
        if scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/api/models":
            return settings.max_model_bytes + MULTIPART_SLACK, "an ONNX model"
        return settings.max_upload_bytes + MULTIPART_SLACK, "an image, a tensor or a JSON body"

    return limit_for


def preload_models(store: ModelStore) -> None:
    """Load (and on first run convert) every built-in model, so the first request does not wait for it."""
    for model_id in store.builtins:
        try:
            store.get(model_id)
        except Exception:  # a broken model must not stop the others; its requests will report the error
            logging.getLogger("cnn_visualiser").exception("could not preload model '%s'", model_id)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Size the thread pool (``thread_pool_size``), build the app's services from its settings
    (``app.state.services``), clear a killed server's leftovers, preload the built-in models, give memory back when
    idle (``idle_trim_s``); at shutdown, stop the training jobs."""
    settings: Settings = app.state.settings
    # blocking routes run in AnyIO's thread pool (40 threads by default); requests queueing for a compute slot
    # hold theirs, so leave room for the cheap ones (PNG fetches, model lists) beside them
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.thread_pool_size
    remove_staging_leftovers(Path(settings.data_dir) / "models")  # a killed server's half-written uploads
    services = app.state.services = build_services(settings)
    if settings.preload:
        threading.Thread(target=preload_models, args=(services.models,), name="preload-models", daemon=True).start()
    trimmer = None
    if settings.idle_trim_s:  # at rest: drop the runs nobody is looking at, then give the memory back
        trimmer = IdleTrimmer(services.compute.idle_for, settings.idle_trim_s,
                              before_trim=lambda: services.runs.forget_unused(settings.idle_trim_s),
                              busy_trim_s=settings.busy_trim_s).start()
    try:
        yield
    finally:
        services.training.shutdown(timeout=5.0)
        if trimmer is not None:
            trimmer.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. ``settings`` defaults to the environment's (``CNN_VIS_*``, ``.env``); every route uses the
    settings given here (``app.state.settings``)."""
    settings = settings or get_settings()
    limit_malloc_arenas(settings.malloc_arenas)
    limit_blas_threads(settings.blas_threads)

    offline_docs = has_local_assets()
    app = FastAPI(title="cnn-visualiser", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  openapi_tags=TAGS, docs_url=None if offline_docs else "/docs", redoc_url=None)
    if offline_docs:
        install_docs(app)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings), idle_timeout=settings.body_timeout_s)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Tile-Layout", "X-Shape", "X-Elapsed-Ms"])
    install_security(app, settings)  # last: the Host and Origin checks wrap the middlewares above
    app.include_router(api_router)
    document_errors(app)
    document_upload_limit(app)
    app.mount("/static", StaticFiles(directory=find_dir("static"), check_dir=False), name="static")
    app.state.templates = Jinja2Templates(directory=find_dir("templates"))
    app.include_router(pages_router)
    return app


app = create_app()
