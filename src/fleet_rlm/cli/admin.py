"""Administration of the store: `fleet db` (the schema), `fleet users` and `fleet tokens`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ..config import Settings
from .common import console, database_error, err


def with_store(action, url: str | None = None) -> str:
    """Run `await action(store)` on the configured store (or the database at `url`); a failure
    is a message and exit 1."""
    import asyncio

    from ..store import Store

    async def run() -> str:
        settings = Settings()
        async with Store(url or settings.database_url, settings.data_dir) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None


db_app = typer.Typer(help="Manage the database schema (FLEET_DATABASE_URL; default a SQLite file "
                     "in FLEET_DATA_DIR).", no_args_is_help=True)
users_app = typer.Typer(help="Users of the web workspace (FLEET_AUTH=token).",
                        no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens of users (FLEET_AUTH=token).", no_args_is_help=True)


def _describe(store, revision: str | None) -> str:
    url = store.url.render_as_string(hide_password=True)
    return f"{url}: {'revision ' + revision if revision else 'empty (no schema)'}"


ADMIN_URL = typer.Option(
    "--url", envvar="FLEET_ADMIN_DATABASE_URL",
    help="The database as the role that owns (or will own) the tables; default "
    "FLEET_DATABASE_URL. On PostgreSQL the server's own role should not be that role.")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: Annotated[str | None, ADMIN_URL] = None,
    grant: Annotated[str | None, typer.Option(
        help="PostgreSQL: then let this role (the server's) read and write the tables' rows, "
        "under row-level security.")] = None,
) -> None:
    """Create or migrate the schema up to REVISION. The only way PostgreSQL is migrated: the
    server never migrates it (the embedded SQLite file migrates itself at start)."""

    async def action(store) -> str:
        await store.upgrade(revision)
        if grant:
            await store.grant(grant)
        return _describe(store, await store.current()) + (f"; granted to {grant}" if grant
                                                            else "")

    console.print(escape(with_store(action, url)))


@db_app.command("gc-calls")
def db_gc_calls() -> None:
    """Remove the pieces of kept model calls that no call refers to any more (those of deleted
    sessions), from the call store in FLEET_DATA_DIR."""
    from ..store.calls import CallStore

    removed, freed = CallStore(Settings().data_dir / "calls").collect_chunks()
    console.print(f"removed {removed} unreferenced chunk(s), {freed / 1024 / 1024:.1f} MB")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1, or base.")],
    url: Annotated[str | None, ADMIN_URL] = None,
) -> None:
    """Migrate the schema down to REVISION (base drops every table and its data)."""

    async def action(store) -> str:
        await store.downgrade(revision)
        return _describe(store, await store.current())

    console.print(with_store(action, url))


@db_app.command("current")
def db_current() -> None:
    """Print the database URL and its schema revision."""

    async def action(store) -> str:
        return _describe(store, await store.current())

    console.print(with_store(action))


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    tenant: Annotated[str | None, typer.Option(
        help="Tenant (a group sharing sessions), created if missing; default: named NAME.")]
    = None,
    admin: Annotated[bool, typer.Option(help="May change the server's settings.")] = False,
) -> None:
    """Add a user; its sessions are visible to its tenant only."""
    from ..store.repos import UserRepo

    async def action(store) -> str:
        await store.prepare()
        user = await UserRepo(store).add(name, tenant, admin=admin)
        return f"user {user.name} ({user.id}) in tenant {tenant or name}" + (
            ", admin" if admin else "")

    console.print(escape(with_store(action)))


@users_app.command("list")
def users_list() -> None:
    """List users with their tenants."""
    from ..store.repos import UserRepo

    async def action(store) -> str:
        await store.prepare()
        rows = await UserRepo(store).list()
        return "\n".join(f"{u.id}  {t}/{u.name}{'  admin' if u.admin else ''}" for u, t in rows)

    console.print(escape(with_store(action)))


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "token",
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from ..store.repos import TokenRepo, UserRepo

    async def action(store) -> str:
        await store.prepare()
        owner = await UserRepo(store).find(user)
        token, secret = await TokenRepo(store).create(owner.id, name)
        err.print(f"token {token.id} for {owner.name}; shown once, store it now:")
        return secret

    print(with_store(action))


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id.")]) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from ..store.repos import TokenRepo

    async def action(store) -> str:
        await store.prepare()
        token = await TokenRepo(store).revoke(token_id)
        return f"revoked token {token.id}"

    console.print(with_store(action))


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Argument(help="User name or id; default all.")] = None,
) -> None:
    """List tokens (never their secrets)."""
    from ..store.repos import TokenRepo, UserRepo

    async def action(store) -> str:
        await store.prepare()
        owner = await UserRepo(store).find(user) if user else None
        tokens = await TokenRepo(store).list(owner.id if owner else None)
        return "\n".join(
            f"{t.id}  user {t.user_id}  {t.name}  created {t.created_at:%Y-%m-%d %H:%M}"
            f"{'  REVOKED' if t.revoked_at else ''}" for t in tokens)

    console.print(escape(with_store(action)))
