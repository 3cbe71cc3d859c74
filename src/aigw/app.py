"""The ASGI application: routers, the gateway middleware, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from aigw import __version__
from aigw.api import admin, agents, auth, chat, health, kb, keys, openai, speech, tts, vision
from aigw.auth.middleware import GatewayMiddleware
from aigw.errors import install_error_handlers
from aigw.logs import configure_logging
from aigw.runtime import Runtime
from aigw.settings import Settings, get_settings

log = logging.getLogger("aigw.app")

WORKER_READY = "worker ready"


async def announce_ready(runtime: Runtime) -> None:
    """Log that this worker process serves, once its models are loaded when they are preloaded.

    Every worker logs this line with its pid, so a supervisor (or a test) can wait for all of them.
    """
    await runtime.engines.warmed()
    log.info(WORKER_READY, extra={"pid": os.getpid(), "preloaded": runtime.settings.preload_models})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        runtime = await Runtime.start(settings)
        runtime.usage.start()
        await runtime.start_workers()
        if settings.preload_models:
            runtime.engines.warm_in_background()
        ready = asyncio.create_task(announce_ready(runtime), name="announce-ready")
        try:
            yield {"runtime": runtime}
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            await runtime.close()

    app = FastAPI(
        title="aigw",
        version=__version__,
        lifespan=lifespan,
        description="Self-hosted AI gateway: one API key for chat, knowledge bases, speech, vision and documents.",
        # FastAPI's built-in OpenTelemetry hooks look up the environment on every request; aigw has its
        # own structured access log, so they are off (measured at 3.5% of a proxied call's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    for module in (health, auth, keys, admin, chat, agents, openai, kb, speech, tts, vision):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(GatewayMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory` and for each worker of `aigw serve --workers N`."""
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
