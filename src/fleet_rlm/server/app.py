"""The FastAPI app: REST under /api/v1, the session WebSocket, and the built web app at /."""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline

from .. import __version__
from ..config import Settings
from ..sessions import ALL_TENANTS, SessionService, install_tenant_guard, tenant_scope
from . import errors, settings_file
from .auth import redact_tokens_in_logs
from .feedback import router as feedback_router
from .guard import RequestGuard, route_limits
from .hub import Hub
from .local_auth import with_server_token
from .routes_documents import router as documents_router
from .routes_limits import router as limits_router
from .routes_programs import router as programs_router
from .routes_sessions import router as sessions_router
from .routes_settings import router as settings_router
from .routes_traces import router as traces_router
from .routes_workspace import router as workspace_router
from .ws import router as ws_router

log = logging.getLogger(__name__)
API = "/api/v1"
DOCS_ASSETS = f"{API}/docs-assets"  # Swagger UI's and ReDoc's scripts, from fastapi-offline
STATIC = Path(__file__).parent / "static"
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleet-rlm</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem;border-radius:4px}}</style></head>
<body><h1>fleet-rlm</h1>
<p>The server is running, but the web app is not built yet.</p>
<p>Build it once (Node.js 20.19 or newer) from the repository and reload this page:</p>
<pre>scripts/build-frontend.sh</pre>
<p>(or <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>)</p>
<p>The build lands in <code>{static}</code>.</p>
<p>The API is available now: <a href="{api}/docs">{api}/docs</a> (Swagger UI),
<a href="{api}/redoc">{api}/redoc</a> (ReDoc).</p>
</body></html>
"""

def create_app(settings: Settings | None = None) -> FastAPI:
    """The app on a SessionService opened at startup and closed at shutdown. With
    FLEET_AUTH=local and no token set, one is made here (the caller reads it from the settings
    it passed: pass them through `local_auth.with_server_token` first to know it)."""
    base = with_server_token(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = SessionService(settings_file.apply(base, settings_file.load(base.data_dir)))
        install_tenant_guard()
        redact_tokens_in_logs(svc.settings)
        with tenant_scope(ALL_TENANTS):  # startup recovery spans every tenant
            await svc.open()
        app.state.svc, app.state.hub = svc, Hub(svc)
        try:
            yield
        finally:
            await app.state.hub.close()
            with tenant_scope(ALL_TENANTS):
                await svc.close()

    # The API docs (Swagger UI, ReDoc) load their scripts from the package, not a CDN, so they
    # work offline.
    app = FastAPIOffline(title="fleet-rlm", version=__version__, lifespan=lifespan,
                         openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs",
                         redoc_url=None, static_url=DOCS_ASSETS,
                         responses=errors.ERROR_RESPONSES)
    errors.install(app)
    routers = (sessions_router, traces_router, documents_router, workspace_router,
               settings_router, limits_router, feedback_router, programs_router, ws_router)
    app.add_middleware(RequestGuard, limits=route_limits(routers, API))
    for router in routers:
        app.include_router(router, prefix=API)

    @app.get(f"{API}/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=f"{API}/openapi.json", title="fleet-rlm - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)
        # ReDoc's footer logo comes from a CDN: images only from here, so nothing leaves.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page

    @app.get(f"{API}/ready", tags=["system"], responses={200: {"content": {
        "application/json": {"example": {"status": "ok"}}}}})
    async def ready() -> JSONResponse:
        """Readiness: the database answers a query."""
        try:
            await app.state.svc.ping()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return JSONResponse(errors.error_body("unavailable", f"{type(exc).__name__}: {exc}",
                                                  status="unavailable"), status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(f"{API}/health", tags=["system"])
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/{path:path}", include_in_schema=False)
    async def web_app(path: str):
        return _static(path)

    return app


def _static(path: str):
    """A file of the built web app; index.html for the app's own routes."""
    index = STATIC / "index.html"
    if path.startswith(API.strip("/")):
        return JSONResponse(errors.error_body("not_found", f"no route /{path}"), 404)
    if not index.is_file():
        return HTMLResponse(NOT_BUILT.format(static=html.escape(str(STATIC)), api=API))
    if path:
        candidate = (STATIC / path).resolve()
        if candidate.is_relative_to(STATIC.resolve()) and candidate.is_file():
            return FileResponse(candidate)
    return FileResponse(index)
