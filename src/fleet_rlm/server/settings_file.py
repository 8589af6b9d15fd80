"""Settings changed in the web app: kept in {data_dir}/settings.json (mode 0600, it may hold API
keys) and laid over the environment's settings at start. Keys are write-only over the API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..budget import renamed_limits
from ..config import Settings, model_ready, provider_keys
from .schemas import SettingsOut, SettingsPatch

FILE_NAME = "settings.json"
SECRETS = ("api_key", "daytona_api_key")
LIMITS = ("max_calls", "max_tokens", "max_usd", "max_wall_s", "max_depth", "max_iterations")
EDITABLE = ("root_model", "sub_model", "api_base", "sandbox", *SECRETS, *LIMITS)


def settings_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load(data_dir: Path) -> dict[str, Any]:
    path = settings_path(data_dir)
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {path}: {exc}; fix or delete the file") from None
    if isinstance(values, dict):  # a file saved before a limit was renamed
        try:
            values = renamed_limits(values, str(path))
        except ValueError as exc:
            raise RuntimeError(f"{exc}; fix or delete the file") from None
    if not isinstance(values, dict) or set(values) - set(EDITABLE):
        raise RuntimeError(f"{path} holds unknown settings; allowed: {', '.join(EDITABLE)}")
    return values


def save(data_dir: Path, values: dict[str, Any]) -> Path:
    """Write atomically; the file is never readable by other users, not even for a moment."""
    path = settings_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(values, f, indent=2)
    os.replace(tmp, path)
    return path


def apply(settings: Settings, values: dict[str, Any]) -> Settings:
    """The settings with `values` laid over; raises pydantic's ValidationError on bad values."""
    return type(settings).model_validate({**settings.model_dump(), **values})


def key_destination(settings: Settings) -> tuple[str, ...]:
    return settings.key_destination


def patch_values(patch: SettingsPatch) -> dict[str, Any]:
    """The fields the patch sets (limits flattened); an empty key clears it."""
    values = {name: getattr(patch, name) for name in patch.model_fields_set if name != "limits"}
    if patch.limits is not None:
        values.update({name: getattr(patch.limits, name)
                       for name in patch.limits.model_fields_set})
    for name in SECRETS:
        if values.get(name) == "":
            values[name] = None
    return values


def describe(settings: Settings) -> SettingsOut:
    return SettingsOut(
        root_model=settings.root_model, sub_model=settings.sub_model,
        api_base=settings.api_base, sandbox=settings.sandbox,
        limits={name: getattr(settings, name) for name in LIMITS},
        api_key_set=bool(settings.api_key), daytona_api_key_set=bool(settings.daytona_api_key),
        auth=settings.auth, model_ready=model_ready(settings),
        provider_keys=list(provider_keys(settings.root_model)))
