"""FastAPI dependencies: the runtime, a database session, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from aigw.auth.principal import Principal
from aigw.errors import Forbidden, Unauthorized
from aigw.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_db(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db)]


async def get_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        if getattr(request.state, "auth_failed", False):
            raise Unauthorized("Invalid or revoked credentials", code="invalid_credentials")
        raise Unauthorized("Authentication required: send 'Authorization: Bearer aigw_...' or log in")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Admin role required", code="admin_required")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]

# Ids are 32-bit integers in every backend; anything else is a 422, not a database overflow.
RowId = Annotated[int, Path(ge=1, le=2_147_483_647)]
