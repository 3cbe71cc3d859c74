"""The process-wide singletons, built once from settings by the app's lifespan or by the CLI."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import threadpoolctl
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from aigw.agents.service import AgentService
from aigw.auth.principal import Authenticator
from aigw.auth.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from aigw.auth.revocation import FileEpoch, RedisEpoch, RevocationEpoch
from aigw.auth.usage import UsageRecorder
from aigw.auth.users import ensure_admin
from aigw.chat.service import ChatService
from aigw.documents.scan import ScanService
from aigw.embeddings.service import EmbeddingService
from aigw.engines.base import EngineRegistry
from aigw.engines.embed import build_embedding_engine
from aigw.engines.embed.base import EmbeddingEngine
from aigw.engines.ocr.rapid import RapidOcrEngine
from aigw.engines.ocr.tesseract import TesseractEngine
from aigw.engines.stt import build_stt_engine
from aigw.engines.tts import build_tts_engines
from aigw.engines.tts.speaker import SpeakerEncoder
from aigw.engines.vision.detectors import Detectors
from aigw.knowledge.hnsw import HnswOptions
from aigw.knowledge.index import build_index
from aigw.knowledge.inject import KnowledgeContext
from aigw.knowledge.jobs import IngestionWorker
from aigw.knowledge.reindex import stale_counts
from aigw.knowledge.retrieve import Retriever
from aigw.knowledge.service import KnowledgeService
from aigw.settings import Settings
from aigw.speech.cloning import Cloner
from aigw.speech.service import SpeechService
from aigw.speech.tts import TtsService
from aigw.speech.voicechat import VoiceChat
from aigw.speech.voices import VoiceService
from aigw.store.db import create_engine, migrate, session_factory
from aigw.store.private import make_private_dir
from aigw.vision.analyze import VisionService
from aigw.vision.ocr import OcrService

log = logging.getLogger("aigw.runtime")


INITIAL_ADMIN_EMAIL = "admin@aigw.local"


async def bootstrap_admin(db: AsyncSession, settings: Settings) -> None:
    """Make sure an admin exists: the one from settings, or a generated one on a first start.

    A generated password is written to `initial_admin.txt` in the data dir (mode 0600), never logged.
    """
    if settings.admin_email and settings.admin_password:
        email, password = settings.admin_email, settings.admin_password.get_secret_value()
    else:
        email, password = INITIAL_ADMIN_EMAIL, secrets.token_urlsafe(12)
    created = await ensure_admin(db, email, password)
    await db.flush()
    if created is None:
        return
    if not settings.admin_password:
        path = settings.data_dir / "initial_admin.txt"
        path.touch(mode=0o600)
        path.write_text(f"email: {email}\npassword: {password}\n")
        log.warning(
            "created the first admin; the password is in the data dir",
            extra={"email": email, "file": str(path.resolve())},
        )
    else:
        log.info("bootstrap admin ready", extra={"email": email})


@dataclass
class Runtime:
    settings: Settings
    secret: bytes
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None
    epoch: RevocationEpoch
    limiter: RateLimiter
    authenticator: Authenticator
    usage: UsageRecorder
    engines: EngineRegistry
    chat: ChatService
    embedder: EmbeddingEngine
    embeddings: EmbeddingService
    knowledge: KnowledgeService
    speech: SpeechService
    tts: TtsService
    voices: VoiceService
    voicechat: VoiceChat
    ocr: OcrService
    vision: VisionService
    scan: ScanService
    agents: AgentService
    ingestion: list[IngestionWorker] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        # numpy's OpenBLAS threads spin while they wait and fought torch's threads for the cores: one BLAS
        # thread took KB vector search from 42 to 23 ms p50 and 120 to 43 ms p95 (bench/kb_scale.py, 10k chunks).
        threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        make_private_dir(settings.data_dir)
        secret = settings.secret()
        db = create_engine(
            settings.resolved_database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )

        async def bootstrap(conn: AsyncConnection) -> None:
            async with AsyncSession(bind=conn) as session:
                await bootstrap_admin(session, settings)

        await migrate(db, settings.data_dir / ".migrate.lock", after=bootstrap)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        epoch: RevocationEpoch
        limiter: RateLimiter
        if redis is not None:
            epoch, limiter = RedisEpoch(redis), RedisRateLimiter(redis)
        else:
            file_epoch = FileEpoch(settings.data_dir / "auth.epoch")
            epoch, limiter = file_epoch, MemoryRateLimiter(file_epoch)
        sessions = session_factory(db)
        usage = UsageRecorder(sessions, interval=settings.usage_flush_seconds)
        engines = EngineRegistry()
        chat = ChatService.from_settings(settings, engines)
        embedder = build_embedding_engine(settings.embedding, settings.resolved_models_dir)
        engines.register(embedder)
        index = build_index(
            db.dialect.name,
            HnswOptions(settings.data_dir / "kb", embedder.model_id, settings.kb_ann_min_chunks),
            model=embedder.model_id,
        )
        knowledge = KnowledgeService(settings, index, Retriever(index, embedder, sessions=sessions))
        chat.context = KnowledgeContext(sessions, knowledge)
        stt = build_stt_engine(settings.stt, settings.resolved_models_dir)
        engines.register(stt)
        speech = SpeechService(stt, settings.stt_max_seconds)
        tts_engines, remote_tts = build_tts_engines(settings.tts, settings.resolved_models_dir)
        for tts_engine in tts_engines.values():
            engines.register(tts_engine)
        if remote_tts is not None:
            engines.register(remote_tts, default=True)
        tts = TtsService(tts_engines, remote_tts)
        encoder = SpeakerEncoder()
        engines.register(encoder)
        cloner = Cloner(
            encoder,
            tts_engines["kokoro"],
            tts_engines["piper"],
            settings.resolved_models_dir,
            uses_reference=settings.tts.engine == "chatterbox",
        )
        tesseract, rapid, detectors = TesseractEngine(), RapidOcrEngine(), Detectors()
        for vision_engine in (tesseract, rapid, detectors):
            engines.register(vision_engine)
        ocr = OcrService(tesseract, settings.image_max_pixels, rapid)
        return cls(
            settings=settings,
            secret=secret,
            db=db,
            sessions=sessions,
            redis=redis,
            epoch=epoch,
            limiter=limiter,
            authenticator=Authenticator(secret, sessions, limiter),
            usage=usage,
            engines=engines,
            chat=chat,
            embedder=embedder,
            embeddings=EmbeddingService.from_settings(settings.embedding, embedder),
            knowledge=knowledge,
            speech=speech,
            tts=tts,
            voices=VoiceService(sessions, tts, cloner, settings.data_dir),
            voicechat=VoiceChat(speech, chat, tts),
            ocr=ocr,
            vision=VisionService(ocr, detectors, chat, settings.vision_model),
            scan=ScanService(ocr, chat, settings.vision_model),
            agents=AgentService(sessions, chat),
        )

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.session_ttl_hours)

    async def health(self) -> dict[str, bool]:
        services = {"database": await self._database_up()}
        if self.redis is not None:
            try:
                services["redis"] = bool(await self.redis.ping())
            except Exception:  # a down Redis is a health fact, not an error of /health
                services["redis"] = False
        services.update(await self.engines.health())
        return services

    async def _database_up(self) -> bool:
        try:
            async with self.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # a down database is a health fact, not an error of /health
            return False

    async def start_workers(self) -> None:
        """Background work of a serving process: knowledge-base ingestion (pending jobs resume here)."""
        dimensions = self.embedder.dimensions
        async with self.sessions() as db:
            if dimensions:
                await self.knowledge.index.prepare(db, dimensions)
            for other, documents, kbs in await stale_counts(db, self.embedder.model_id):
                log.warning(
                    "documents of another embedding model are searched by full text only: run `aigw kb reindex`",
                    extra={"model": other, "configured": self.embedder.model_id, "documents": documents, "kbs": kbs},
                )
        for _ in range(self.settings.kb_ingest_workers):
            worker = IngestionWorker(
                self.sessions, self.knowledge, self.knowledge.index, self.embedder, self.settings.kb_job_lease_seconds
            )
            worker.start()
            self.ingestion.append(worker)

    async def close(self) -> None:
        for worker in self.ingestion:
            await worker.stop()
        await self.knowledge.index.close()
        await self.usage.stop()
        await self.scan.close()
        await self.engines.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.dispose()
