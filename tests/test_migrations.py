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
            # 0006: written before models were recorded, with 384-dimension vectors: aigw's only default model.
            model = await db.scalar(text("SELECT embedding_model FROM kb_documents WHERE id = :d"), {"d": document_id})
            assert model == "all-MiniLM-L6-v2"
            # 0007: the KB's word counts, backfilled from its chunks.
            interns = await db.scalar(
                text("SELECT chunks FROM kb_term_stats WHERE kb_id = :k AND lexeme = 'intern'"), {"k": kb_id}
            )
            assert interns == 1
            await db.execute(text("DELETE FROM kb_documents WHERE id = :d"), {"d": document_id})
            await db.commit()
            assert await db.scalar(text("SELECT count(*) FROM kb_chunks_fts")) == 0
    finally:
        await engine.dispose()


async def test_sqlite_full_text_survives_the_split_into_one_table_per_owner(tmp_path: Any) -> None:
    """0005 moves SQLite's full text from one shared FTS5 table into one per owner: each user's chunks written
    before it are found after it, by their owner only, and deleting a document still takes its full-text rows."""
    engine = create_engine(normalize_database_url(f"sqlite:///{tmp_path / 'aigw.db'}"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("0004"))
        owners = {}
        async with session_factory(engine)() as db:
            for email, content in [("a@example.com", "Interns get twelve days of paid leave."),
                                   ("b@example.com", "Interns at our firm get no leave at all.")]:  # fmt: skip
                user, kb = await user_and_kb(db, email, "handbook")
                document = await ready_document(db, kb, f"{email}.md", 1, kind="markdown")
                await db.execute(
                    text(
                        "INSERT INTO kb_chunks (document_id, kb_id, position, context, content, embedding) "
                        "VALUES (:d, :k, 0, 'Leave', :c, NULL)"
                    ),
                    {"d": document.id, "k": kb.id, "c": content},
                )
                chunk_id = await db.scalar(text("SELECT max(id) FROM kb_chunks"))
                await db.execute(
                    text("INSERT INTO kb_chunks_fts (rowid, context, content) VALUES (:i, 'Leave', :c)"),
                    {"i": chunk_id, "c": content},
                )
                owners[email] = (user.id, kb.id, document.id, chunk_id)
            await db.commit()
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("head"))

        index = build_index("sqlite")
        async with session_factory(engine)() as db:
            for _, kb_id, _, chunk_id in owners.values():
                found = await index.fulltext(db, Scope([kb_id]), "interns leave", 5)
                assert [chunk for chunk, _ in found] == [chunk_id]
            # 0006: no vector to tell the model by, so it stays unknown (vector search leaves it to a reindex).
            assert await db.scalar(text("SELECT count(*) FROM kb_documents WHERE embedding_model IS NULL")) == 2
            user_id, kb_id, document_id, chunk_id = owners["a@example.com"]
            await index.deleting(db, user_id, [document_id])
            await db.execute(text("DELETE FROM kb_documents WHERE id = :d"), {"d": document_id})
            await db.commit()
            assert await index.fulltext(db, Scope([kb_id]), "interns leave", 5) == []
            assert await db.scalar(text(f"SELECT count(*) FROM kb_chunks_fts_{user_id}")) == 0
            tables = set(await db.scalars(text("SELECT name FROM sqlite_master WHERE name LIKE 'kb_chunks_fts%'")))
            assert "kb_chunks_fts" not in tables
        async with engine.begin() as conn:  # and back: the shared table is rebuilt from the chunks
            await conn.run_sync(lambda connection: command.downgrade(_config(connection), "0004"))
            assert (await conn.execute(text("SELECT count(*) FROM kb_chunks_fts"))).scalar() == 1
    finally:
        await engine.dispose()


def _config(connection: Connection) -> Any:
    config = alembic_config()
    config.attributes["connection"] = connection
    return config
