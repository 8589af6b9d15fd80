"""Secrets out of text that is logged or stored: one redaction for the server's logs and for
every error text a turn records (a provider that echoes the key in its error must not put it
into the store, the browser or a trace).

Redacted: the values of the keys and tokens this process was configured with (`remember`), the
values of its environment variables named like secrets (…_KEY, …_TOKEN, …_SECRET,
…_PASSWORD), and what looks like a credential whatever its origin: `?token=` in URLs, bearer
headers, fleet API tokens and `sk-…` keys.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter values ("none", "test") would mask ordinary words
PATTERNS = (
    (re.compile(r"([?&]token=)[^&\s\"'<>]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{MASK}"),
    (re.compile(r"\bfleet_[A-Za-z0-9_-]{16,}"), f"fleet_{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), f"sk-{MASK}"),
)
SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)

_remembered: set[str] = set()
_lock = threading.Lock()


def remember(*values: str | None) -> None:
    """Redact these values from now on (keys and tokens this process holds)."""
    with _lock:
        _remembered.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)


@functools.cache
def _environment_secrets() -> frozenset[str]:
    return frozenset(value for name, value in os.environ.items()
                     if SECRET_VARIABLE.search(name) and len(value) >= MIN_SECRET_CHARS)


def redact(text: str) -> str:
    """`text` with every known secret and credential-looking string masked."""
    with _lock:
        known = _remembered | _environment_secrets()
    for secret in sorted(known, key=len, reverse=True):  # a key containing another goes first
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Log records redacted: message, arguments and the formatted exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact_logs(*names: str) -> None:
    """Install the filter on these loggers and their handlers, and on the handlers every other
    record ends in (the root logger's, and the last resort one that prints warnings when there
    are none): a logger's own filters do not see its children's records."""
    loggers = [logging.getLogger(name) for name in names]
    targets: list[logging.Filterer | None] = [*loggers, logging.getLogger(), logging.lastResort]
    targets += [h for logger in (*loggers, logging.getLogger()) for h in logger.handlers]
    for target in targets:
        if target is not None and not any(isinstance(f, RedactSecrets) for f in target.filters):
            target.addFilter(RedactSecrets())
