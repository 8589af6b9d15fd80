"""Fixtures shared by the integration tests."""

from pg_deployment import deployment, empty_deployment  # noqa: F401 - fixtures
from sandbox_support import backend, make  # noqa: F401 - fixtures
from service_support import open_service  # noqa: F401 - fixtures
