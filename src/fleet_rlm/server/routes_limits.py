"""A tenant's own budget limits: read by any user of the tenant, set by its admin, never above
the server's (which stay server-wide, in the settings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from ..sessions import LIMIT_KEYS, LimitRaised, SessionService
from .auth import Principal, current_user
from .deps import Service, User
from .errors import ApiError
from .schemas import Limits, TenantLimitsOut

router = APIRouter(tags=["settings"])


async def tenant_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not user.admin:
        raise ApiError(403, "forbidden", "only an admin of the tenant sets its limits")
    return user


TenantAdmin = Annotated[Principal, Depends(tenant_admin)]


async def _report(svc: SessionService, user: Principal) -> TenantLimitsOut:
    own = await svc.tenant_limits(user)
    effective = svc.with_limits(None, tenant=own)
    return TenantLimitsOut(
        tenant=Limits(**own),
        server=Limits(**{name: getattr(svc.settings, name) for name in LIMIT_KEYS}),
        effective=Limits(**{name: getattr(effective, name) for name in LIMIT_KEYS}))


@router.get("/tenant/limits", response_model=TenantLimitsOut)
async def get_tenant_limits(svc: Service, user: User) -> TenantLimitsOut:
    return await _report(svc, user)


@router.put("/tenant/limits", response_model=TenantLimitsOut)
async def put_tenant_limits(svc: Service, user: TenantAdmin, body: Limits) -> TenantLimitsOut:
    """Replace the tenant's limits; null (or left out) means the server's. A value above the
    server's is refused (422, naming the field and the server's limit); every turn of the tenant
    from now on runs within them, a paused one too when it resumes."""
    limits = body.model_dump(exclude_none=True)
    try:
        await svc.set_tenant_limits(user, limits)
    except LimitRaised as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field, server_limit=exc.limit) from None
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid", message) from None
    return await _report(svc, user)
