"""create_app(settings): the FastAPI application, wired from one Settings object."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI

from app import middleware, render
from app.config import Settings
from app.data.db import Database
from app.errors import install_error_handlers
from app.heavy import HeavyPool
from app.routes import ROUTERS
from app.static_files import STATIC, CompressedStatic
from app.warm import warm

# app/templates and app/static link to the repository's templates/ and static/: the pages sit inside
# the package in a checkout, an editable install and a wheel alike (app's package data, pyproject.toml).
PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"

DESCRIPTION = """\
unitscope shows the units of GoogLeNet like a neurophysiologist shows neurons: for each unit,
its strongest positive, near-zero and strongest negative images, and per layer the study's
scatter of category images among each unit's top and bottom k.

Every HTML page at `/X` has a JSON twin at `/api/X`. Errors share one shape:
`{"error": {"status", "title", "detail"}}` (404 unknown name or id, 422 bad parameter,
503 database not available, or the server busy: then with Retry-After).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; tests pass their own settings."""
    settings = settings or Settings()
    db = Database(settings)
    pool = HeavyPool(settings.heavy_workers, settings.heavy_queue, int(settings.heavy_memory), settings.heavy_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far (modules, templates, schemas) lives as long as the server: keep it
        # out of the cyclic GC, whose full collections otherwise stall a request by ~40 ms now and then.
        gc.collect()
        gc.freeze()
        # Page handlers run in anyio's thread pool (40 threads by default). Under many clients, 40
        # threads on the GIL share the CPU so that a slow request takes 40 turns to finish: fewer
        # threads serve requests nearer to first come, first served, which bounds the tail
        # (bench/load.py, docs/performance.md).
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        stopping = threading.Event()
        if not settings.lazy:
            await to_thread.run_sync(warm, db, settings, stopping)
            db.on_replace = lambda: threading.Thread(target=warm, args=(db, settings, stopping), name="warm",
                                                     daemon=True).start()
        yield
        stopping.set()
        pool.close()
        db.close()

    # /docs is served by app.routes.docs with local assets (the default loads them from a CDN); no /redoc.
    app = FastAPI(title="unitscope", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.heavy = pool
    app.state.templates = render.make_environment(TEMPLATES)
    app.state.render_error = render.error_page
    install_error_handlers(app)
    middleware.install(app, settings.allowed_hosts)
    app.mount("/static", CompressedStatic(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
