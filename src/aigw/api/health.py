from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aigw.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health, one boolean per configured service (public)")
async def health(runtime: RuntimeDep) -> dict[str, Any]:
    services = await runtime.health()
    return {"status": "ok" if all(services.values()) else "degraded", "services": services}


@router.get("/api/healthz", summary="Answer-engine liveness (public)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/api/healthz", summary="Answer-engine liveness (public)")
async def healthz_post() -> dict[str, str]:
    return {"status": "ok"}
