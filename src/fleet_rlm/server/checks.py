""""Does it work?" from the settings page: one tiny model call, one sandbox run with the
backend's health checks (those `fleet doctor` prints). A failure is a result (ok=false) with
what to do about it, not an HTTP error."""

from __future__ import annotations

import time

from ..budget import Budget
from ..config import Settings
from .schemas import CheckResult, HealthCheck

PING = "Reply with the single word OK."
MODEL_TIMEOUT_S = 30


def _result(started: float, ok: bool, message: str, problem: str | None = None,
            detail: str | None = None, checks: list[HealthCheck] | None = None) -> CheckResult:
    return CheckResult(ok=ok, problem=problem, message=message, detail=detail,
                       duration_s=round(time.monotonic() - started, 3), checks=checks or [])


def _model_guidance(exc: Exception, settings: Settings) -> tuple[str, str]:
    from dspy.utils import exceptions as lm_errors

    where = settings.api_base or f"the provider of {settings.root_model}"
    if isinstance(exc, lm_errors.LMTransportError | lm_errors.LMTimeoutError):
        return "unreachable", (
            f"Could not reach {where}. Check that the server is running and that api_base is "
            "right (an OpenAI-compatible base URL usually ends in /v1).")
    if isinstance(exc, lm_errors.LMAuthError | lm_errors.LMNotConfiguredError):
        return "auth", (
            f"{where} rejected the credentials. Set the API key in the settings (or the "
            "provider's variable, e.g. OPENAI_API_KEY) and check that it is valid.")
    if isinstance(exc, lm_errors.LMUnsupportedModelError) or (
            isinstance(exc, lm_errors.LMInvalidRequestError) and "model" in str(exc).lower()):
        return "unknown_model", (
            f"{where} does not know the model {settings.root_model!r}. Models are written "
            "provider/name, e.g. openai/gpt-4o-mini; for an OpenAI-compatible server use "
            "openai/<the name it serves>.")
    if isinstance(exc, lm_errors.LMBillingError | lm_errors.LMRateLimitError):
        return "quota", f"{where} refused for billing or rate limits: check the account."
    return "error", f"The model call failed: {type(exc).__name__}. See the detail."


def check_model(settings: Settings) -> CheckResult:
    """One short call to the root model through the budgeted client."""
    from ..lm import build_lms

    started = time.monotonic()
    from ..lm import ProviderRefused, TruncatedReply

    # One request, its failure shown as it is: a check does not retry.
    root, _ = build_lms(settings.model_copy(update={"lm_retries": 0, "lm_length_retries": 0}),
                        Budget.from_settings(settings))
    try:
        outputs = root(PING, max_tokens=8, timeout=MODEL_TIMEOUT_S)
    except TruncatedReply as exc:  # it answered, at more length than the ping allows
        outputs = [exc.text]
    except Exception as exc:  # noqa: BLE001 - every failure becomes guidance
        if isinstance(exc, ProviderRefused) and isinstance(exc.__cause__, Exception):
            exc = exc.__cause__
        problem, message = _model_guidance(exc, settings)
        return _result(started, False, message, problem, f"{type(exc).__name__}: {exc}")
    reply = str(outputs[0] if outputs else "").strip()
    return _result(started, True, f"{settings.root_model} answered: {reply[:80]!r}")


def check_sandbox(settings: Settings) -> CheckResult:
    """The configured backend's health checks, then print(1) in a fresh sandbox: ok when no
    check failed and the code ran. A failed check (no runtime, a rejected key) is the answer:
    the sandbox would fail the same way, after the same waits."""
    from ..sandbox import SandboxError, backend, create_sandbox
    from ..sandbox.health import sandbox_checks

    started = time.monotonic()
    checks = [HealthCheck(name=c.name, status=c.status, detail=c.detail)
              for c in sandbox_checks(settings)]

    def result(ok: bool, message: str, detail: str | None = None) -> CheckResult:
        return _result(started, ok, message, None if ok else "sandbox", detail, checks)

    if failed := [c for c in checks if c.status == "fail"]:
        return result(False, "; ".join(c.detail for c in failed))
    try:
        sandbox = create_sandbox(settings)
        try:
            ran = sandbox.execute("print(1)", timeout=60)
        finally:
            sandbox.close()
    except SandboxError as exc:
        return result(False, str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a missing optional dependency
        return result(False, f"The {settings.sandbox} sandbox could not start: {exc}",
                      f"{type(exc).__name__}: {exc}")
    if not ran.ok or ran.stdout.strip() != "1":
        return result(False, f"The {settings.sandbox} sandbox ran but failed: "
                      f"{ran.error_message or ran.stdout!r}", ran.traceback)
    note = "" if backend(settings.sandbox).isolated else " (isolation is OFF)"
    return result(True, f"The {settings.sandbox} sandbox ran print(1){note}.")
