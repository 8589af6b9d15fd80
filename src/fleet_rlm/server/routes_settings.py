"""The server's settings (models, endpoint, limits, sandbox backend), their checks, and usage."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from ..redaction import remember
from ..sandbox import backend
from . import checks, settings_file
from .auth import Principal, admin_user
from .deps import Service, User
from .errors import ApiError
from .schemas import CheckResult, SettingsOut, SettingsPatch, UsageReport, UsageRow

router = APIRouter(tags=["settings"])
Admin = Annotated[Principal, Depends(admin_user)]
USAGE_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "tokens", "usd",
                "usd_unknown_calls")


def _merged(svc, values: dict):
    name = values.get("sandbox")
    if name is not None and not backend(name).api_settable:
        raise ApiError(403, "forbidden", f"sandbox: {name} runs model code without "
                       "isolation, as the server's own user; it is never set through the API "
                       "(only FLEET_SANDBOX in the server's environment sets it)")
    try:
        return settings_file.apply(svc.settings, values)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid", message) from None


def _moves_key(svc, values: dict, settings) -> bool:
    """The values send the stored API key somewhere it was not set for."""
    return ("api_key" not in values and bool(svc.settings.api_key)
            and settings_file.key_destination(settings)
            != settings_file.key_destination(svc.settings))


@router.get("/settings", response_model=SettingsOut)
async def get_settings(svc: Service, user: User) -> SettingsOut:
    """API keys are never returned: `api_key_set` says whether one is configured."""
    return settings_file.describe(svc.settings)


@router.patch("/settings", response_model=SettingsOut)
async def patch_settings(svc: Service, user: Admin, request: Request, body: SettingsPatch
                         ) -> SettingsOut:
    """Saved in {data_dir}/settings.json (mode 0600) and used from the next turn on; sandboxes
    already running keep their backend until the session's sandbox restarts."""
    values = settings_file.patch_values(body)
    settings = _merged(svc, values)
    if _moves_key(svc, values, settings):
        where = "api_base" if settings.api_base or svc.settings.api_base else "root_model"
        raise ApiError(422, "invalid", f"{where}: model calls would go to "
                       f"{', '.join(settings_file.key_destination(settings))}, and the stored "
                       "API key was set for another endpoint; give api_key along (the key for "
                       "the new endpoint, or \"\" for none)")
    saved = {**settings_file.load(settings.data_dir), **values}
    await asyncio.to_thread(settings_file.save, settings.data_dir, saved)
    remember(settings.api_key, settings.daytona_api_key)
    svc.settings = settings
    return settings_file.describe(settings)


@router.post("/settings/test-model", response_model=CheckResult)
async def test_model(svc: Service, user: Admin, body: SettingsPatch | None = None
                     ) -> CheckResult:
    """One tiny call to the root model; with a body, of those settings before saving them.
    The stored API key goes only to the endpoint it was saved for: a body that points the
    models elsewhere is tried with the key it gives, or none."""
    settings = svc.settings
    if body:
        values = settings_file.patch_values(body)
        settings = _merged(svc, values)
        if _moves_key(svc, values, settings):
            settings = settings.model_copy(update={"api_key": None})
    return await asyncio.to_thread(checks.check_model, settings)


@router.post("/settings/test-sandbox", response_model=CheckResult)
async def test_sandbox(svc: Service, user: Admin, body: SettingsPatch | None = None
                       ) -> CheckResult:
    """print(1) in a fresh sandbox of the configured (or given) backend, and its health checks:
    the facts `fleet doctor` prints."""
    settings = _merged(svc, settings_file.patch_values(body)) if body else svc.settings
    return await asyncio.to_thread(checks.check_sandbox, settings)


@router.get("/usage", response_model=UsageReport, tags=["usage"])
async def usage(svc: Service, user: User, group: Literal["session", "day"] = "session"
                ) -> UsageReport:
    """Calls, tokens and cost of the tenant's finished turns, per session or per UTC day."""
    rows: dict[str, UsageRow] = {}
    total = UsageRow(key="total")
    counts: dict[str, int] = defaultdict(int)
    for session_id, title, created_at, turn_usage in await svc.usage(user):
        key = session_id if group == "session" else created_at.date().isoformat()
        row = rows.setdefault(key, UsageRow(key=key, title=title if group == "session" else None))
        counts[key] += 1
        for target in (row, total):
            for name in USAGE_FIELDS:
                setattr(target, name, getattr(target, name) + (turn_usage.get(name) or 0))
    for key, row in rows.items():
        row.turns = counts[key]
        row.usd = round(row.usd, 6)
    total.turns, total.usd = sum(counts.values()), round(total.usd, 6)
    items = sorted(rows.values(), key=lambda r: r.key, reverse=group == "day")
    return UsageReport(group=group, items=items, total=total)
