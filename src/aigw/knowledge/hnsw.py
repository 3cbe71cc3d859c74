"""An HNSW graph over the chunk vectors of a SQLite database, for scopes too large to scan exactly.

`SqliteIndex` keeps every chunk vector in memory and scans a scope exactly, which reads the whole matrix (150 MB
at 100k chunks) for every query. Once the database holds `min_chunks` vectors, this module also keeps a faiss HNSW
graph (inner product of L2-normalised vectors: cosine) over all of them, and a scope of at least `min_chunks`
chunks is searched through it:
- the scope (KBs, tag filters) is applied inside the graph walk by a bitmap of graph positions, with the walk's
  breadth (`efSearch`) scaled by how small a share of the graph the scope is. A scope below `MIN_SHARE` of the
  graph, or a walk that comes back short, is scanned exactly instead: a search never returns fewer hits than
  the scope has;
- rows newer than the graph (committed, not yet added) are scanned exactly and merged;
- deleted chunks stay in the graph, unselected, until they are `REBUILD_DEAD_SHARE` of it; then it is rebuilt.

The graph is kept in `<data dir>/kb/vectors.<model>.<dimensions>.faiss` with the model, the dimensions, the highest
chunk id it covers and a SHA-256 of its contents; it is written to a temporary file, fsynced and renamed, under a
file lock, so that one worker process writes while the others wait and load. A worker loads it at start, checks
it against the database and adds what the database has beyond it. A file that is missing, corrupt, of another
model or that does not match the database is rebuilt in the background (logged with the reason); queries scan
exactly until a graph is ready. The graph's upkeep runs on one maintenance thread per process; searches run in
the caller's thread and share a read lock that additions take, in small batches, for writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger("aigw.knowledge.hnsw")

Vector = NDArray[np.float32]

# Graph shape and walk breadth, measured at 100k of bench/kb_scale.py's chunks with the quality questions: the top
# 10 of the exact scan (up to ties between duplicate chunks) and 99.9% of its top 100, in 0.3-0.6 ms of faiss
# (efConstruction 64 found 96% of the top 10, and nothing for a few questions that got lost in the graph; 256
# takes 0.4 ms per vector to add on one core: 41 s for 100k).
M = 32
EF_CONSTRUCTION = 256
EF_SEARCH = 256  # at least 4 * k; divided by the scope's share of the graph, which a filtered walk must make up
# Below this share of the graph, a walk wide enough to find a scope's best rows costs more than scanning them
# (at 100k: a 10% scope needs efSearch 2560, 5.5 ms, against 5-8 ms for its exact scan; 5% needs 4096, 10 ms
# against 2-3 ms).
MIN_SHARE = 0.1
REBUILD_DEAD_SHARE = 0.2
BUILD_BATCH = 1000  # vectors per add while building: a close waits for at most one batch
FOLLOW_BATCH = 32  # vectors per add to a live graph: a search waits for at most one batch (~15 ms)
SAVE_AFTER = 1000  # unsaved additions (or a tenth of the graph, if more) before the file is rewritten
RETRY_SECONDS = 1.0  # another worker holds the file lock: look again after this
VERIFY_BATCH = 8192

FORMAT = 1
MAGIC = b"AIGWHNSW"
HEADER_BYTES = 1024
READ_BLOCK = 4 * 1024 * 1024


@functools.cache
def _faiss() -> Any:
    """faiss, imported on first use (it loads a large library) and kept to one OpenMP thread: the graph's upkeep
    runs beside queries and the embedding model on a few cores, and a single query's walk is serial anyway."""
    import faiss

    faiss.omp_set_num_threads(1)
    return faiss


@dataclass(frozen=True)
class HnswOptions:
    directory: Path  # where the graph file lives: <data dir>/kb
    model: str  # the embedding model's vector space; a file of another one is not used
    min_chunks: int  # build a graph from this many vectors; search it for scopes this large


@dataclass(frozen=True)
class Rows:
    """The in-memory matrix as the maintenance thread sees it: views, not copies. Rows below `len(ids)` never
    change, except `alive` turning false; ids ascend."""

    ids: NDArray[np.int64]
    alive: NDArray[np.bool_]
    vectors: Vector
    allocated: int  # the highest chunk id the database ever gave out (ids are never reused)


class InvalidGraphFile(Exception):
    """The graph file cannot be used; the message says why (it is logged when the graph is rebuilt)."""


class _ReadWriteLock:
    """Searches share the graph; an addition waits for them and holds new ones back until it is done."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer_waiting = False
        self._writing = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writer_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writer_waiting = True
            while self._writing or self._readers:
                self._cond.wait()
            self._writer_waiting, self._writing = False, True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class _Graph:
    """A faiss HNSW graph and the chunk id of each of its positions (ascending: vectors are added in id order)."""

    def __init__(self, index: Any, labels: NDArray[np.int64], last_id: int) -> None:
        self.index = index
        self.labels = labels
        self.last_id = last_id  # every chunk up to this id that was alive when it was added is in the graph
        self.unsaved = 0
        self.lock = _ReadWriteLock()

    @classmethod
    def empty(cls, dimensions: int) -> _Graph:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(dimensions, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        return cls(index, np.zeros(0, np.int64), 0)

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def dimensions(self) -> int:
        return int(self.index.d)

    def add(self, ids: NDArray[np.int64], vectors: Vector, last_id: int) -> None:
        with self.lock.writing():
            if ids.size:
                self.index.add(np.ascontiguousarray(vectors, np.float32))
                self.labels = np.concatenate([self.labels, ids])
                self.unsaved += int(ids.size)
            self.last_id = max(self.last_id, last_id)

    def vectors(self) -> Vector:
        """The stored vectors, by position (a view of faiss's storage)."""
        faiss = _faiss()
        storage = faiss.downcast_index(self.index.storage)
        view: Vector = faiss.rev_swig_ptr(storage.get_xb(), self.size * self.dimensions)
        return view.reshape(self.size, self.dimensions)

    def search(
        self, covered: NDArray[np.int64], query: Vector, k: int, ef: int
    ) -> tuple[NDArray[np.int64], Vector] | None:
        """The best `k` of the chunks `covered` (ids that are all in the graph), or None if some are not."""
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        with self.lock.reading():
            n = self.size
            if covered.size < n:
                positions = np.searchsorted(self.labels, covered)
                if positions.size and (positions[-1] >= n or not np.array_equal(self.labels[positions], covered)):
                    return None
                bits = np.zeros(n, np.bool_)
                bits[positions] = True
                packed = np.packbits(bits, bitorder="little")
                selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(packed))
                params.sel = selector
            scores, found = self.index.search(query.reshape(1, -1), k, params=params)
            hits = found[0] >= 0
            return self.labels[found[0][hits]], scores[0][hits]


def graph_path(directory: Path, model: str, dimensions: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._")[:100] or "model"
    return directory / f"vectors.{slug}.{dimensions}.faiss"


def write_graph(path: Path, graph: _Graph, model: str) -> int:
    """Write the graph atomically: a temporary file, fsynced, renamed over the old one. Returns its size."""
    faiss = _faiss()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    digest = hashlib.sha256()
    labels = np.ascontiguousarray(graph.labels, "<i8").tobytes()
    try:
        with open(temporary, "wb") as out:
            out.write(b"\0" * HEADER_BYTES)
            written = 0

            def write(block: bytes) -> int:
                nonlocal written
                digest.update(block)
                written += len(block)
                return out.write(block)

            writer = faiss.PyCallbackIOWriter(write)
            faiss.write_index(graph.index, writer)
            del writer  # flushed and released before the header counts what it wrote
            digest.update(labels)
            out.write(labels)
            header = {
                "format": FORMAT,
                "model": model,
                "dimensions": graph.dimensions,
                "last_id": graph.last_id,
                "count": graph.size,
                "index_bytes": written,
                "labels_bytes": len(labels),
                "sha256": digest.hexdigest(),
            }
            encoded = json.dumps(header).encode()
            out.seek(0)
            out.write(MAGIC + len(encoded).to_bytes(4, "little") + encoded)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return HEADER_BYTES + written + len(labels)


def read_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_BYTES)
    except FileNotFoundError:
        raise InvalidGraphFile("missing") from None
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC):
        raise InvalidGraphFile("corrupt: not a graph file")
    length = int.from_bytes(head[len(MAGIC) : len(MAGIC) + 4], "little")
    try:
        header = json.loads(head[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    except ValueError:
        raise InvalidGraphFile("corrupt: unreadable header") from None
    fields = {"format", "model", "dimensions", "last_id", "count", "index_bytes", "labels_bytes", "sha256"}
    if not isinstance(header, dict) or not fields <= header.keys():
        raise InvalidGraphFile("corrupt: incomplete header")
    return header


def read_graph(path: Path, model: str, dimensions: int) -> _Graph:
    """Load a graph file written by `write_graph`; its contents are checked against their SHA-256 before faiss
    parses them."""
    faiss = _faiss()
    header = read_header(path)
    if header["format"] != FORMAT:
        raise InvalidGraphFile(f"of format {header['format']}, not {FORMAT}")
    if header["model"] != model or header["dimensions"] != dimensions:
        raise InvalidGraphFile(f"of another embedding model ({header['model']}, {header['dimensions']} dimensions)")
    index_bytes, labels_bytes = int(header["index_bytes"]), int(header["labels_bytes"])
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size != HEADER_BYTES + index_bytes + labels_bytes:
            raise InvalidGraphFile("corrupt: truncated or extended")
        file.seek(HEADER_BYTES)
        digest = hashlib.sha256()
        while block := file.read(READ_BLOCK):
            digest.update(block)
        if digest.hexdigest() != header["sha256"]:
            raise InvalidGraphFile("corrupt: checksum mismatch")
        file.seek(HEADER_BYTES + index_bytes)
        labels = np.frombuffer(file.read(labels_bytes), "<i8").astype(np.int64)
        file.seek(HEADER_BYTES)
        try:
            index = faiss.read_index(faiss.PyCallbackIOReader(file.read))  # already of its own class
        except RuntimeError as exc:
            raise InvalidGraphFile(f"corrupt: {str(exc)[:200]}") from None
    if (
        not isinstance(index, faiss.IndexHNSWFlat)
        or index.d != dimensions
        or index.metric_type != faiss.METRIC_INNER_PRODUCT
        or index.ntotal != len(labels)
        or np.any(np.diff(labels) <= 0)
    ):
        raise InvalidGraphFile("corrupt: not an inner-product HNSW graph of ascending chunk ids")
    return _Graph(index, labels, int(header["last_id"]))


class HnswIndex:
    """The HNSW side of SQLite vector search: builds, loads, follows and saves the graph, and answers scope
    searches from it when it can."""

    def __init__(self, options: HnswOptions) -> None:
        self.options = options
        self._graph: _Graph | None = None
        self._rows: Rows | None = None
        self._mutex = threading.Lock()
        self._wanted = False
        self._running = False
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-hnsw")
        self.answered = 0  # searches the graph answered (the others were scanned exactly)

    @property
    def ready(self) -> bool:
        return self._graph is not None

    def path(self, dimensions: int) -> Path:
        return graph_path(self.options.directory, self.options.model, dimensions)

    def refresh(self, rows: Rows) -> None:
        """Hand the maintenance thread the matrix as it is now. Cheap: called on the event loop after a sync."""
        with self._mutex:
            self._rows = rows
            self._wanted = True
            if self._running or self._stop.is_set():
                return
            self._running = True
        self._executor.submit(self._run)

    def close(self) -> None:
        """Stop the upkeep (a build stops within one batch) and save what the file lacks. Blocking."""
        with self._mutex:  # no refresh submits work once the executor is shutting down
            self._stop.set()
        self._executor.shutdown(wait=True)
        graph = self._graph
        if graph is not None and graph.unsaved:
            try:
                self._save(graph)
            except OSError:
                log.warning("could not save the vector graph", exc_info=True)

    def search(
        self, ids: NDArray[np.int64], vectors: Vector, rows: NDArray[np.intp], query: Vector, limit: int
    ) -> list[tuple[int, float]] | None:
        """The best `limit` of the matrix `rows` (a scope, ascending), or None where an exact scan must answer:
        no graph yet, a scope too small or too small a share of the graph, or a walk that came back short."""
        graph = self._graph
        if graph is None or rows.size < self.options.min_chunks or query.shape[0] != graph.dimensions:
            return None
        scope_ids = ids[rows]
        split = int(np.searchsorted(scope_ids, graph.last_id, side="right"))
        covered = scope_ids[:split]
        size = graph.size
        if covered.size == 0 or covered.size < MIN_SHARE * size:
            return None
        k = min(limit, covered.size)
        ef = int(max(EF_SEARCH, 4 * k) * size / covered.size)
        found = graph.search(covered, query, k, ef)
        if found is None or found[0].size < k:
            return None
        labels, scores = found
        tail = rows[split:]
        if tail.size:  # committed after the graph's last addition
            labels = np.concatenate([labels, ids[tail]])
            scores = np.concatenate([scores, vectors[tail] @ query])
        order = np.argsort(-scores, kind="stable")[:limit]
        self.answered += 1
        return [(int(labels[i]), float(scores[i])) for i in order]

    # Upkeep, on the maintenance thread

    def _run(self) -> None:
        while True:
            with self._mutex:
                if not self._wanted or self._stop.is_set():
                    self._running = False
                    return
                self._wanted = False
                rows = self._rows
            assert rows is not None
            try:
                again = self._maintain(rows)
            except Exception:  # the graph only speeds searches up; exact search goes on without it
                log.exception("vector graph upkeep failed")
                again = False
            if again:
                with self._mutex:
                    self._wanted = True
                self._stop.wait(RETRY_SECONDS)

    def _maintain(self, rows: Rows) -> bool:
        """One round of upkeep; True if it should run again soon (another worker held the file lock)."""
        dimensions = rows.vectors.shape[1] if rows.vectors.ndim == 2 else 0
        live = int(np.count_nonzero(rows.alive))
        graph = self._graph
        if graph is None:
            if live < self.options.min_chunks or dimensions == 0:
                return False
            graph = self._open(rows, dimensions)
            if graph is None:
                return False
            self._graph = graph
            log.info("vector graph ready", extra={"vectors": graph.size, "min_chunks": self.options.min_chunks})
        self._follow(graph, rows)
        dead = graph.size - live
        if dead > REBUILD_DEAD_SHARE * graph.size:
            return self._compact(rows, dimensions, f"{dead} of its {graph.size} vectors were deleted")
        if graph.unsaved >= max(SAVE_AFTER, graph.size // 10):
            return not self._save(graph)
        return False

    def _open(self, rows: Rows, dimensions: int) -> _Graph | None:
        path = self.path(dimensions)
        try:
            return self._load(path, rows)
        except InvalidGraphFile as exc:
            reason = str(exc)
        with self._file_lock(path, wait=True) as held:
            if not held:
                return None  # closing
            try:  # another worker may have written it while this one waited for the lock
                return self._load(path, rows)
            except InvalidGraphFile as exc:
                reason = str(exc) if reason == "missing" else reason
            log.warning(
                "rebuilding the vector graph",
                extra={"file": str(path), "reason": reason, "vectors": int(np.count_nonzero(rows.alive))},
            )
            graph = self._build(rows, dimensions)
            if graph is not None:
                self._write(path, graph)
            return graph

    def _compact(self, rows: Rows, dimensions: int, reason: str) -> bool:
        path = self.path(dimensions)
        with self._file_lock(path, wait=False) as held:
            if not held:
                return True
            live = int(np.count_nonzero(rows.alive))
            with contextlib.suppress(InvalidGraphFile):  # another worker's rebuild, if it already has
                loaded = self._read(path, rows)
                if loaded.size - live <= REBUILD_DEAD_SHARE * loaded.size / 2:
                    self._follow(loaded, rows)
                    self._graph = loaded
                    return False
            log.info("rebuilding the vector graph", extra={"file": str(path), "reason": reason, "vectors": live})
            graph = self._build(rows, dimensions)
            if graph is None:
                return False
            self._graph = graph
            self._write(path, graph)
        return False

    def _load(self, path: Path, rows: Rows) -> _Graph:
        started = time.perf_counter()
        graph = self._read(path, rows)
        log.info(
            "vector graph loaded",
            extra={
                "file": str(path),
                "vectors": graph.size,
                "last_id": graph.last_id,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return graph

    def _read(self, path: Path, rows: Rows) -> _Graph:
        graph = read_graph(path, self.options.model, rows.vectors.shape[1])
        _verify(graph, rows)
        return graph

    def _build(self, rows: Rows, dimensions: int) -> _Graph | None:
        started = time.perf_counter()
        graph = _Graph.empty(dimensions)
        keep = np.flatnonzero(rows.alive)
        for start in range(0, keep.size, BUILD_BATCH):
            if self._stop.is_set():
                return None
            part = keep[start : start + BUILD_BATCH]
            graph.add(rows.ids[part], rows.vectors[part], int(rows.ids[part[-1]]))
        graph.last_id = int(rows.ids[-1]) if rows.ids.size else 0
        log.info(
            "vector graph built",
            extra={"vectors": graph.size, "seconds": round(time.perf_counter() - started, 2)},
        )
        return graph

    def _follow(self, graph: _Graph, rows: Rows) -> None:
        """Add the rows the graph does not have yet, in small batches (searches wait for one at most)."""
        start = int(np.searchsorted(rows.ids, graph.last_id, side="right"))
        if start >= rows.ids.size:
            return
        new = start + np.flatnonzero(rows.alive[start:])
        for begin in range(0, new.size, FOLLOW_BATCH):
            if self._stop.is_set():
                return
            part = new[begin : begin + FOLLOW_BATCH]
            graph.add(rows.ids[part], rows.vectors[part], int(rows.ids[part[-1]]))
        graph.add(np.zeros(0, np.int64), rows.vectors[:0], int(rows.ids[-1]))  # deleted rows at the end too

    def _save(self, graph: _Graph) -> bool:
        """Write the graph unless another worker holds the file or already wrote as much; False if it was busy."""
        path = self.path(graph.dimensions)
        with self._file_lock(path, wait=False) as held:
            if not held:
                return False
            with contextlib.suppress(InvalidGraphFile):
                header = read_header(path)
                if header["model"] == self.options.model and header["last_id"] >= graph.last_id:
                    graph.unsaved = 0
                    return True
            self._write(path, graph)
        return True

    def _write(self, path: Path, graph: _Graph) -> None:
        started = time.perf_counter()
        with graph.lock.reading():  # searches go on; additions come only from this thread
            unsaved = graph.unsaved
            size = write_graph(path, graph, self.options.model)
            graph.unsaved -= unsaved
        log.info(
            "vector graph saved",
            extra={
                "file": str(path),
                "vectors": graph.size,
                "bytes": size,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )

    @contextlib.contextmanager
    def _file_lock(self, path: Path, *, wait: bool) -> Iterator[bool]:
        """Hold `<file>.lock` (an flock, released by the kernel if the holder dies). Yields False when it is
        taken and `wait` is false, or when the index is closing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a+b") as lock:
            while True:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait or self._stop.wait(RETRY_SECONDS / 4):
                        yield False
                        return
            try:
                yield True
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _verify(graph: _Graph, rows: Rows) -> None:
    """The graph must hold, with the same vector, every live chunk of the database up to its last id, and cover
    no id the database never gave out (a file left from a database that was replaced or restored)."""
    if graph.last_id > rows.allocated:
        raise InvalidGraphFile(f"of another database: it covers chunk ids up to {graph.last_id}")
    wanted = np.flatnonzero(rows.alive & (rows.ids <= graph.last_id))
    positions = np.searchsorted(graph.labels, rows.ids[wanted])
    if wanted.size and (positions[-1] >= graph.size or not np.array_equal(graph.labels[positions], rows.ids[wanted])):
        raise InvalidGraphFile("of another database: chunks of this one are missing from it")
    stored = graph.vectors()
    for start in range(0, wanted.size, VERIFY_BATCH):
        chunk = slice(start, start + VERIFY_BATCH)
        if not np.array_equal(stored[positions[chunk]], rows.vectors[wanted[chunk]]):
            raise InvalidGraphFile("of another database: its vectors differ from this one's")
