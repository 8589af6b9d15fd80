from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

# Before litellm is first imported: otherwise its import fetches a price map from GitHub.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# The scripted models have no price; tests of the refusal to run them turn this off.
os.environ["FLEET_ALLOW_UNPRICED_MODELS"] = "true"
# Retries after provider faults back off for milliseconds, not seconds.
os.environ["FLEET_LM_RETRY_BASE_S"] = "0.01"
os.environ["FLEET_LM_RETRY_MAX_S"] = "1"

import dspy  # noqa: E402
import pytest  # noqa: E402

from fleet_rlm.testing import ScriptedLMServer  # noqa: E402
from fleet_rlm.testing.scripted_lm import Script  # noqa: E402

# dspy's cache key ignores api_base, so a reply cached in one test would answer the same prompt in
# another test without reaching that test's scripted server.
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


class NetworkBlockedError(RuntimeError):
    """Not an OSError, so retrying clients do not swallow it as a transient failure."""


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False  # a name would need DNS, which is itself the network
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _check(family: int, address: Any) -> None:
    if family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlockedError(
            f"tests may not open non-loopback connections (attempted {address!r}); "
            "point the client at a local fake such as fleet_rlm.testing.ScriptedLMServer"
        )


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self.family, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self.family, address)
    return _real_connect_ex(self, address)


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    _check(socket.AF_INET, address)  # checked before the name lookup it would do
    return _real_create_connection(address, *args, **kwargs)


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "create_connection", _guarded_create_connection)


@pytest.fixture
def scripted_lm() -> Iterator[Callable[[Script], ScriptedLMServer]]:
    """Factory: `srv = scripted_lm(rules)` starts a server that stops when the test ends."""
    servers: list[ScriptedLMServer] = []

    def start(rules: Script) -> ScriptedLMServer:
        servers.append(ScriptedLMServer(rules).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
