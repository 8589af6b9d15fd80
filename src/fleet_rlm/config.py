"""Settings: one pydantic-settings class read from FLEET_* variables and a .env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SandboxBackend = Literal["local", "gvisor", "unsafe-local", "daytona"]


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "fleet-rlm"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLEET_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    root_model: str = Field("openai/gpt-4o-mini",
                            description="Model that drives the RLM and agent.")
    sub_model: str | None = Field(None, description="Model for llm_query; defaults to root_model.")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint for both models.")
    api_key: str | None = Field(None, description="Key sent to api_base; provider keys also work.")

    sandbox: SandboxBackend = "local"
    sandbox_memory_mb: int = Field(1024, gt=0)
    sandbox_max_processes: int = Field(64, gt=0)
    sandbox_cpus: float = Field(
        1.0, gt=0, description="CPU time a local sandbox may use, in cores (a cgroup quota).")
    sandbox_tmp_mb: int = Field(
        256, gt=0, description="Size of a local sandbox's /tmp and of its /dev/shm, each in MiB; "
        "their files count in its memory cap.")
    sandbox_disk_mb: int = Field(
        1024, gt=0, description="Size of a local sandbox's /work (its workspace), in MiB.")
    sandbox_disk_files: int = Field(
        65_536, gt=0, description="Files and directories a local sandbox's /work can hold.")
    sandbox_max_open_files: int = Field(
        1024, gt=0, description="Open files per process in a local sandbox (RLIMIT_NOFILE).")
    exec_timeout_s: float = Field(60.0, gt=0)
    exec_kill_grace_s: float = Field(2.0, gt=0)
    sandbox_idle_s: float = Field(
        900.0, gt=0, description="Seconds a session's sandbox may sit idle before it is saved and "
        "closed; its next use starts a new one, restored from the save.")
    max_output_chars: int = Field(100_000, gt=0)

    # FLEET_SANDBOX=daytona. The key, URL and target also read Daytona's own variable names.
    daytona_api_key: str | None = Field(
        None, validation_alias=AliasChoices("fleet_daytona_api_key", "daytona_api_key"),
        description="Daytona API key (FLEET_DAYTONA_API_KEY or DAYTONA_API_KEY).")
    daytona_api_url: str | None = Field(
        None, validation_alias=AliasChoices("fleet_daytona_api_url", "daytona_api_url"),
        description="Daytona API URL; default https://app.daytona.io/api.")
    daytona_target: str | None = Field(
        None, validation_alias=AliasChoices("fleet_daytona_target", "daytona_target"),
        description="Daytona region (e.g. us, eu); default: the organisation's.")
    daytona_snapshot: str | None = Field(
        None, description="Snapshot sandboxes start from (`fleet daytona snapshot` makes one "
        "carrying the driver); default: Daytona's default snapshot, driver uploaded at start.")
    daytona_auto_stop_minutes: int = Field(
        30, gt=0, description="Idle minutes before Daytona stops a sandbox; never less than the "
        "turn's wall limit, since a sandbox waiting on a child run looks idle.")
    daytona_auto_delete_minutes: int = Field(
        0, ge=0, description="Minutes a stopped sandbox is kept before deletion (0: at once).")
    daytona_network_block_all: bool = Field(
        True, description="Block all network access from Daytona sandboxes.")
    daytona_create_timeout_s: float = Field(
        120.0, gt=0, description="Seconds to wait for a Daytona sandbox to start.")

    max_depth: int = Field(2, ge=0, description="Deepest node of the recursive tree, counted "
                           "from its top: the root RLM, or a chat turn's agent, is depth 0.")
    max_iterations: int = Field(20, gt=0)
    max_calls: int = Field(200, gt=0, description="Most model calls in a turn's whole tree "
                           "(FLEET_MAX_CALLS; FLEET_MAX_LM_CALLS, its old name, still works).")
    max_tokens: int = Field(2_000_000, gt=0)
    max_usd: float = Field(5.0, gt=0)
    max_wall_s: float = Field(1800.0, gt=0)
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="USD per million tokens per model, overriding LiteLLM's table: "
        '{"model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}.',
    )
    allow_unpriced_models: bool = Field(
        False, description="Run models with no known price (not in LiteLLM's table or prices) "
        "with USD unmetered; otherwise a run with such a model is refused.")
    call_max_tokens: int = Field(
        16_000, gt=0, description="Most completion tokens one model call may produce, sent as "
        "max_tokens (lowered to the model's own maximum when LiteLLM's table knows it) unless "
        "the LM sets its own; each call reserves this much of the token and USD limits.")
    lm_timeout_s: float = Field(
        120.0, gt=0, description="A model request with no bytes for this long is a timeout "
        "(retried like a connection reset).")
    lm_retries: int = Field(
        4, ge=0, description="Retries of one model call on 429, 500/502/503/504, connection "
        "resets, timeouts and malformed replies (each attempt counts in the budget).")
    lm_turn_retries: int = Field(
        16, ge=0, description="Retries of model calls in one whole turn (a retry storm stops).")
    lm_retry_base_s: float = Field(
        0.5, ge=0, description="The first retry's backoff; doubled each retry, with jitter.")
    lm_retry_max_s: float = Field(
        30.0, ge=0, description="The longest backoff between retries (Retry-After included: "
        "a provider asking for longer ends the call).")
    lm_length_retries: int = Field(
        1, ge=0, description="Retries of a reply cut at the token limit (finish_reason "
        "length), each with the cut shown to the model.")
    record_file: Path | None = Field(
        None, description="Append every model request and reply (keys redacted) to this JSON "
        "lines file; the scripted LM server replays it (`fleet run --record`).")

    delegate_chars: int = Field(
        40_000, gt=0, description="Documents longer than this go to the recursive engine.")
    history_max_tokens: int = Field(
        6_000, gt=0, description="Conversation kept verbatim; older turns are summarised.")
    max_agent_steps: int = Field(12, gt=0)
    max_step_attempts: int = Field(
        3, gt=0, description="Model calls one agent step or RLM iteration may make until its "
        "reply can be read: the first, retries with the parse error shown to the model, the "
        "last through dspy's JSON adapter (from 3 attempts up); each counts in the budget.")
    max_turn_retries: int = Field(
        20, ge=0, description="Retries of unreadable replies one turn (or `fleet run`) may make "
        "across all its steps and nodes; past it the next unreadable reply ends its step.")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql://user@host/db; default: the SQLite "
        "file {data_dir}/fleet.db.")
    max_unwritten_events: int = Field(
        20_000, gt=0, description="Events a turn keeps in memory while the database is "
        "unavailable; past that the turn ends as failed.")
    max_document_mb: int = Field(200, gt=0, description="Largest document accepted, in MB.")
    turn_lease_s: float = Field(
        30.0, ge=1, description="A running turn's lease on the database's clock, renewed by "
        "the process running it every third of it; the turn of a process that stopped "
        "renewing (killed, its machine lost) is closed as interrupted by another process "
        "within 1 1/6 leases (a process gone from this machine: within a sixth).")
    capture_calls: bool = Field(
        True, description="Keep every model call's request messages and reply (keys and tokens "
        "redacted) in the call store beside the database, for the trace inspector.")
    capture_max_call_mb: float = Field(
        16, gt=0, description="A model call whose messages and reply take more is recorded "
        "without them.")
    capture_max_store_mb: float = Field(
        4096, gt=0, description="The call store's size; once full, calls are recorded without "
        "their messages (the same text is kept once, however often it is sent).")

    # Observability and the MCP server (extras: fleet-rlm[mlflow], fleet-rlm[mcp]).
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("fleet_mlflow_tracking_uri", "mlflow_tracking_uri"),
        description="MLflow tracking URI (FLEET_MLFLOW_TRACKING_URI or MLFLOW_TRACKING_URI); "
        "when set, every turn and every `fleet run` is recorded as one MLflow trace.")
    mlflow_experiment: str = Field("fleet-rlm", description="MLflow experiment for the traces.")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="An OTLP/HTTP collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT, "
        "e.g. http://localhost:4318); when set, every turn and `fleet run` is exported as "
        "OpenTelemetry spans (GenAI conventions). Headers, timeout and the rest come from the "
        "standard OTEL_EXPORTER_OTLP_* variables. Needs the otel extra.")
    mcp_token: str | None = Field(
        None, description="Bearer token `fleet serve-mcp --transport http` takes as the local "
        "user (users' API tokens act as their users); generated and printed at start when unset.")
    mcp_roots: list[Path] | None = Field(
        None, description="Directories whose files `rlm_query(paths=...)` may read (JSON list); "
        "default: none over MCP HTTP, the working directory over stdio.")

    auth: Literal["local", "token", "none"] = Field(
        "local", description="local: one local user, loopback only, every request carries the "
        "server's token (FLEET_TOKEN, else generated at start and printed as a URL). token: users "
        "and API tokens (`fleet users add`, `fleet tokens create`), one tenant per user group. "
        "none: one local user, loopback only, no token: any local user may drive it.")
    token: str | None = Field(
        None, description="The token of FLEET_AUTH=local; generated at each start when unset.")
    max_workspace_file_mb: int = Field(
        50, gt=0, description="Largest file written into a session workspace over the API, in MB.")
    workspace_io_timeout_s: float = Field(
        30.0, gt=0, description="Longest a workspace file operation over the API may take; it "
        "runs on a small pool of its own, so a stuck file never holds the server's threads.")

    # What a client may make the server read, hold and parse (checked before the body is read).
    max_upload_mb: int = Field(
        200, gt=0, description="Largest document upload request, in MB; refused unread past it.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a connection has to send a request's headers.")
    body_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a request body may stall before it is refused (408).")
    max_connections: int = Field(
        500, gt=0, description="Open connections (WebSockets included) served at once; "
        "requests past it get 503.")
    extract_cpu_s: int = Field(
        60, gt=0, description="CPU seconds one document's text extraction may use.")
    extract_memory_mb: int = Field(
        2048, gt=0, description="Memory (address space) of a document extraction process, in MB.")
    extract_max_text_mb: int = Field(
        256, gt=0, description="Largest text a document may extract to (UTF-8), in MB.")
    extract_concurrency: int = Field(
        2, gt=0, description="Documents of one tenant extracted at the same time.")

    @model_validator(mode="before")
    @classmethod
    def _renamed_limits(cls, data: Any) -> Any:
        """A limit's deprecated name (a keyword, a .env line, or FLEET_<OLD NAME> in the
        environment) gives its value to the new name, unless that is set too."""
        from .budget import DEPRECATED_LIMIT_NAMES, deprecated_name

        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in DEPRECATED_LIMIT_NAMES.items():
            variable = f"FLEET_{old.upper()}"
            value = data.pop(old, None)
            if value is None:
                value = os.environ.get(variable)
            if value is not None:
                deprecated_name(old, new, f"settings ({variable})")
                data.setdefault(new, value)
        return data

    @property
    def effective_sub_model(self) -> str:
        return self.sub_model or self.root_model

    @property
    def key_destination(self) -> tuple[str, ...]:
        """Where the API key goes with each model call: the API base (if any) and the models'
        providers. A provider that ignores the API base (`replicate/`, `vertex_ai/`, ...) sends
        the key to its own endpoint, so it is part of the destination either way. A key set for
        one destination never goes to another."""
        providers = sorted({model.partition("/")[0]
                            for model in (self.root_model, self.effective_sub_model)})
        return (self.api_base, *providers) if self.api_base else tuple(providers)

    def with_models(self, root_model: str | None, sub_model: str | None) -> Settings:
        """These settings with a session's own models (None: keep the server's). The API key
        goes along only when the models send it where it was set for; otherwise they run
        without it."""
        if root_model is None and sub_model is None:
            return self
        update: dict[str, Any] = {"root_model": root_model or self.root_model,
                                  "sub_model": sub_model or self.sub_model}
        changed = self.model_copy(update=update)
        if changed.key_destination != self.key_destination:
            changed = changed.model_copy(update={"api_key": None})
        return changed


def get_settings(**overrides) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# The variables LiteLLM reads a provider's key from (any one will do), by the model's prefix.
PROVIDER_KEYS = {
    "openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",), "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",), "together_ai": ("TOGETHERAI_API_KEY",),
    "xai": ("XAI_API_KEY",), "cohere": ("COHERE_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY",), "perplexity": ("PERPLEXITYAI_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
}


def provider_keys(model: str) -> tuple[str, ...]:
    """The key variables of the model's provider; empty when this table does not know it."""
    provider, _, _ = model.partition("/")
    return PROVIDER_KEYS.get(provider, ()) if "/" in model else ()


def model_ready(settings: Settings) -> bool:
    """A key or an endpoint is configured, or the provider's key is in the environment. A
    provider this table does not know (its own credentials: cloud roles, local servers) counts
    as ready: the model test says more."""
    if settings.api_key or settings.api_base:
        return True
    names = provider_keys(settings.root_model)
    return not names or any(os.environ.get(name) for name in names)


def missing_model_message(settings: Settings) -> str:
    """What to set when no model is configured: the FLEET_ settings, then the provider's own."""
    names = provider_keys(settings.root_model)
    own = f" (or {' / '.join(names)})" if names else ""
    return (f"no model is configured for {settings.root_model}: set FLEET_API_KEY{own} to your "
            "key, or FLEET_API_BASE to an OpenAI-compatible server (e.g. http://localhost:8000/v1);"
            " FLEET_ROOT_MODEL and FLEET_SUB_MODEL choose the models (in the environment or .env)."
            " `fleet doctor --live` checks them")


def invalid_settings(exc: ValidationError) -> str:
    """A settings ValidationError as one line naming each bad value's flag and variable."""
    parts = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:
            parts.append(message)
            continue
        name = str(error["loc"][0])
        got = repr(error.get("input"))
        got = got if len(got) <= 60 else got[:59] + "…"
        parts.append(f"{name} (--{name.replace('_', '-')}, FLEET_{name.upper()}): "
                     f"{message[:1].lower()}{message[1:]}, got {got}")
    return "bad setting: " + "; ".join(parts)
