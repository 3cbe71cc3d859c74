"""Schema migrations keep what users stored: a database written at an older revision, upgraded, still answers."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from aigw.knowledge.index import Scope, build_index
from aigw.settings import normalize_database_url
from aigw.store.db import alembic_config, create_engine, session_factory
from kb_rows import ready_document, user_and_kb


def upgrade_to(revision: str) -> Any:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return run


async def test_postgres_full_text_survives_the_move_to_its_own_table(postgres: Any) -> None:
    """0004 moves PostgreSQL's tsvectors out of kb_chunks: chunks written before it are still found by full text,
    and deleting a document still takes its full-text rows with it."""
    engine = create_engine(normalize_database_url(await asyncio.to_thread(postgres.new_database)))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("0003"))
        async with session_factory(engine)() as db:
            _, kb = await user_and_kb(db, "old@example.com", "handbook")
            document = await ready_document(db, kb, "leave.md", 2, kind="markdown")
            vector = "[" + ",".join(["0.05"] * 384) + "]"
            for position, content in enumerate(["Interns get twelve days of paid leave.", "The canteen opens at 8."]):
                await db.execute(
                    text(
                        "INSERT INTO kb_chunks (document_id, kb_id, position, context, content, embedding) "
                        "VALUES (:d, :k, :p, 'Leave', :c, CAST(:v AS vector))"
                    ),
                    {"d": document.id, "k": kb.id, "p": position, "c": content, "v": vector},
                )
            await db.commit()
            kb_id, document_id = kb.id, document.id
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("head"))

        index = build_index("postgresql")
        async with session_factory(engine)() as db:
            found = await index.fulltext(db, Scope([kb_id]), "how many days do interns get", 5)
            assert len(found) == 1
            content = await db.scalar(text("SELECT content FROM kb_chunks WHERE id = :i"), {"i": found[0][0]})
            assert content == "Interns get twelve days of paid leave."
            assert await index.fulltext(db, Scope([kb_id + 1]), "interns", 5) == []
            await db.execute(text("DELETE FROM kb_documents WHERE id = :d"), {"d": document_id})
            await db.commit()
            assert await db.scalar(text("SELECT count(*) FROM kb_chunks_fts")) == 0
    finally:
        await engine.dispose()
