"""The `aigw` command: serve, manage users and keys, follow knowledge bases, check the installation."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import shutil
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from aigw import __version__
from aigw.auth import api_keys, users
from aigw.errors import AigwError
from aigw.knowledge.progress import unit_of
from aigw.knowledge.reindex import Reindexer, Stale, stale_counts, stale_documents
from aigw.knowledge.service import DocumentInfo
from aigw.runtime import Runtime
from aigw.settings import get_settings, redacted_url
from aigw.store.private import keep_files_private, loose_paths

app = typer.Typer(help="aigw: a self-hosted AI gateway.", no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
kb_app = typer.Typer(help="Knowledge bases and the ingestion of their documents.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(kb_app, name="kb")

T = TypeVar("T")


def run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run `work` against a runtime built from settings (migrating the database first)."""

    async def main() -> T:
        runtime = await Runtime.start(get_settings())
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except AigwError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default AIGW_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default AIGW_PORT or 8080)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import uvicorn

    settings = get_settings()
    if workers > 1 and not settings.redis_url:
        typer.secho(
            "note: without AIGW_REDIS_URL each worker keeps its own rate-limit counters",
            fg=typer.colors.YELLOW,
            err=True,
        )
    uvicorn.run(
        "aigw.app:create_app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


@app.command()
def migrate() -> None:
    """Apply database migrations (the server also does this on start)."""

    async def work(_: Runtime) -> None:
        typer.echo("database is at the latest schema")

    run(work)


@user_app.command("create")
def user_create(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    name: str = "",
    role: Annotated[str, typer.Option(help="customer or admin")] = "customer",
    rate_limit: Annotated[int | None, typer.Option(min=1, help="Requests per minute")] = None,
) -> None:
    """Create a user."""
    if role not in users.ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(users.ROLES)}")

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            user = await users.register_user(
                db,
                email=email,
                password=password,
                name=name,
                role=role,
                rate_limit=rate_limit or rt.settings.default_rate_limit,
            )
            await db.commit()
            typer.echo(f"created user {user.id} {user.email} ({user.role})")

    run(work)


@user_app.command("list")
def user_list() -> None:
    """List users."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            typer.echo(f"{'id':>5}  {'email':<32} {'role':<9} {'limit':>6}  active")
            for user in await users.list_users(db, limit=100_000):
                typer.echo(f"{user.id:>5}  {user.email:<32} {user.role:<9} {user.rate_limit:>6}  {user.active}")

    run(work)


@user_app.command("set-role")
def user_set_role(email: str, role: str) -> None:
    """Make a user a customer or an admin."""
    if role not in users.ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(users.ROLES)}")

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            user = await users.get_user_by_email(db, email)
            await users.update_user(db, rt.epoch, user.id, {"role": role})
            typer.echo(f"{email} is now {role}")

    run(work)


@user_app.command("deactivate")
def user_deactivate(email: str) -> None:
    """Deactivate a user: their sessions and keys stop working at once, in every worker."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            user = await users.get_user_by_email(db, email)
            await users.deactivate_user(db, rt.epoch, user.id)
            typer.echo(f"deactivated {email}")

    run(work)


@key_app.command("create")
def key_create(email: str, name: Annotated[str, typer.Option(help="Label for the key")] = "cli") -> None:
    """Create an API key for a user and print it (it is shown only this once)."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            user = await users.get_user_by_email(db, email)
            key, secret = await api_keys.create_key(db, secret=rt.secret, user_id=user.id, name=name)
            typer.echo(secret)
            typer.secho(
                f"key {key.id} for {email}; copy it now, it is not shown again", err=True, fg=typer.colors.YELLOW
            )

    run(work)


@key_app.command("list")
def key_list(email: Annotated[str | None, typer.Option(help="Only this user's keys")] = None) -> None:
    """List API keys (prefix only, never the secret)."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            owner = (await users.get_user_by_email(db, email)).id if email else None
            typer.echo(f"{'id':>5}  {'prefix':<14} {'owner':<32} {'name':<20} last used")
            for key, owner_email in await api_keys.list_keys(db, owner_id=owner):
                used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
                typer.echo(f"{key.id:>5}  {key.prefix:<14} {owner_email:<32} {key.name:<20} {used}")

    run(work)


@key_app.command("revoke")
def key_revoke(key_id: int) -> None:
    """Delete an API key; it stops working on the next request."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            await api_keys.revoke_key(db, rt.epoch, key_id=key_id, owner_id=None)
            typer.echo(f"revoked key {key_id}")

    run(work)


@kb_app.command("list")
def kb_list(email: Annotated[str | None, typer.Option(help="Only this user's knowledge bases")] = None) -> None:
    """List knowledge bases with their owner and number of documents."""

    async def work(rt: Runtime) -> None:
        async with rt.sessions() as db:
            owner = (await users.get_user_by_email(db, email)).id if email else None
            typer.echo(f"{'id':>5}  {'name':<32} {'owner':<32} {'documents':>9}")
            for kb, count, owner_email in await rt.knowledge.list_kbs(db, owner):
                typer.echo(f"{kb.id:>5}  {kb.name:<32} {owner_email:<32} {count:>9}")

    run(work)


KB_DOCUMENTS_LIMIT = 1000


@kb_app.command("documents")
def kb_documents(
    kb_id: int,
    email: Annotated[str, typer.Option(help="The knowledge base's owner")],
    watch: Annotated[bool, typer.Option(help="Follow the documents until every one is ready or failed")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between two looks, with --watch")] = 1.0,
) -> None:
    """List a knowledge base's documents with their status, stage and progress.

    With --watch, show progress bars until every document is ready or failed (exit status 1 if any failed).
    """

    async def listing(rt: Runtime, owner: int) -> list[DocumentInfo]:
        async with rt.sessions() as db:  # a short session per look: nothing stays open while we wait
            return await rt.knowledge.list_documents(db, owner, kb_id, limit=KB_DOCUMENTS_LIMIT)

    async def work(rt: Runtime) -> list[DocumentInfo]:
        async with rt.sessions() as db:
            owner = (await users.get_user_by_email(db, email)).id
        infos = await listing(rt, owner)
        if watch:
            with DocumentBars() as bars:
                bars.show(infos)
                while any(info.document.status == "processing" for info in infos):
                    await asyncio.sleep(interval)
                    infos = await listing(rt, owner)
                    bars.show(infos)
        return infos

    infos = run(work)
    print_documents(infos)
    if watch and any(info.document.status == "failed" for info in infos):
        raise typer.Exit(1)


@kb_app.command("reindex")
def kb_reindex(
    kb_id: Annotated[int | None, typer.Option("--kb", help="Only this knowledge base")] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Every ready document, even those already of the configured model")
    ] = False,
) -> None:
    """Re-embed documents whose vectors come from another embedding model than the configured one.

    Searches compare a question only with vectors of the configured model; documents of another model are found
    by full text alone until they are re-embedded. Each document is swapped in one transaction from its stored
    chunks (no re-extraction), so the server can keep serving meanwhile.
    """

    async def work(rt: Runtime) -> None:
        model = rt.embedder.model_id
        async with rt.sessions() as db:
            documents = await stale_documents(db, model, kb_id, everything=everything)
        if not documents:
            typer.echo(f"every document is embedded with {model}")
            return
        total = sum(d.chunks for d in documents)
        typer.echo(f"re-embedding {len(documents)} documents ({total} chunks) with {model}")
        before: dict[int, int] = {}
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed}/{task.total} chunks"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("re-embedding", total=total)
            offset = 0

            def done(stale: Stale, n: int) -> None:
                nonlocal offset
                if stale.id not in before:
                    before[stale.id] = offset
                    offset += stale.chunks
                bar.update(task, completed=before[stale.id] + n, description=f"document {stale.id}")

            finished, skipped = await Reindexer(rt.sessions, rt.knowledge.index, rt.embedder).all(documents, done)
            bar.update(task, completed=total)
        typer.echo(
            f"re-embedded {finished} documents with {model}"
            + (f"; {skipped} skipped (deleted or changed meanwhile)" if skipped else "")
        )

    run(work)


def print_documents(infos: Sequence[DocumentInfo]) -> None:
    typer.echo(f"{'id':>5}  {'status':<11} {'stage':<11} {'progress':<20} {'chunks':>6}  document")
    for info in infos:
        doc = info.document
        typer.echo(
            f"{doc.id:>5}  {doc.status:<11} {doc.stage or '-':<11} {progress_text(info) or '-':<20}"
            f" {doc.chunk_count:>6}  {document_name(info)}"
        )
        if doc.error:
            typer.echo(f"{'':>7}error: {doc.error}")


def progress_text(info: DocumentInfo) -> str:
    """How far the stage has got: "48/130 chunks", "2/5 pages", or "" when it has nothing to count."""
    doc = info.document
    if doc.progress_total is None:
        return ""
    return f"{doc.progress_done or 0}/{doc.progress_total} {unit_of(doc.stage)}"


def document_name(info: DocumentInfo) -> str:
    doc = info.document
    return doc.filename or doc.title or doc.url or f"document {doc.id}"


class DocumentBars:
    """One progress bar per document that was processing when the watch began, on stderr."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[count]:<16}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> DocumentBars:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def show(self, infos: Sequence[DocumentInfo]) -> None:
        for info in infos:
            doc = info.document
            if doc.id not in self._tasks:
                if doc.status != "processing":
                    continue  # finished before the watch began: the listing shows it
                self._tasks[doc.id] = self._progress.add_task("", total=None, count="")
            label = doc.stage if doc.status == "processing" and doc.stage else doc.status
            # No total (a stage with nothing to count yet) is a pulsing bar; a failed document's bar is empty.
            total = 1 if doc.status == "failed" else doc.progress_total
            self._progress.update(
                self._tasks[doc.id],
                description=f"{doc.id:>5} {document_name(info)[:20]:<20} {label:<10}",
                completed=doc.progress_done or 0,
                total=total,
                count=progress_text(info),
            )


# What each optional part is for; `doctor` reports which of them this machine has.
SYSTEM_PROGRAMS = {
    "redis-server": "shared rate limits across workers (tests start it)",
    "tesseract": "OCR",
    "espeak-ng": "text to speech in the 27 languages no packaged neural voice speaks",
}
PYTHON_PACKAGES = {
    "llama_cpp": "embedded chat model",
    "faster_whisper": "speech to text",
    "piper": "text to speech in English",
    "kokoro_onnx": "text to speech in 15 more languages",
    "resemblyzer": "approximate voice cloning",
    "asyncpg": "PostgreSQL",
    "redis": "Redis client",
}


@app.command()
def doctor() -> None:
    """Show the settings in force, the services reachable, and which engines and packages are present."""
    settings = get_settings()
    typer.echo(
        f"aigw {__version__} on Python {platform.python_version()} ({platform.machine()}, {os.cpu_count()} cores)"
    )
    typer.echo(f"data dir      {settings.data_dir.resolve()}")
    for path, mode in loose_paths(settings.data_dir):
        typer.secho(
            f"warning       {path} is open to other accounts (mode {mode:04o}): chmod go-rwx it",
            fg=typer.colors.YELLOW,
        )
    typer.echo(f"database      {redacted_url(settings.resolved_database_url)}")
    typer.echo(
        f"redis         {redacted_url(settings.redis_url) if settings.redis_url else '(none: in-process rate limits)'}"
    )

    async def work(rt: Runtime) -> None:
        for name, up in (await rt.health()).items():
            typer.echo(f"service       {name:<20} {'ok' if up else 'DOWN'}")
        async with rt.sessions() as db:
            for other, documents, kbs in await stale_counts(db, rt.embedder.model_id):
                typer.secho(
                    f"warning       {documents} documents in {kbs} knowledge bases were embedded with "
                    f"{other or 'an unrecorded model'}, not {rt.embedder.model_id}: searched by full text only "
                    "until `aigw kb reindex`",
                    fg=typer.colors.YELLOW,
                )

    run(work)
    for program, purpose in SYSTEM_PROGRAMS.items():
        found = shutil.which(program)
        typer.echo(f"program       {program:<20} {found or 'missing'}  ({purpose})")
    for module, purpose in PYTHON_PACKAGES.items():
        present = importlib.util.find_spec(module) is not None
        typer.echo(f"python        {module:<20} {'present' if present else 'missing'}  ({purpose})")


def main() -> None:
    keep_files_private()  # before anything is written, by this process or the workers it starts
    try:
        app()
    except ValidationError as exc:  # settings from env or aigw.toml: say which, without a traceback
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        typer.secho(f"error: invalid settings: {problems}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
