"""The embedding engines, called directly: the local engine on the real all-MiniLM-L6-v2 and real text, the
Ollama and OpenAI-compatible engines against protocol doubles on loopback."""

from __future__ import annotations

import asyncio
import inspect
import socket
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from aigw.engines.embed import EmbeddingConfig, EmbeddingEngine, build_embedding_engine
from aigw.engines.embed.local import SentenceTransformerEngine, cpu_has_bf16
from aigw.engines.embed.ollama import OllamaEmbeddingEngine
from aigw.engines.embed.openai_compat import OpenAIEmbeddingEngine
from aigw.engines.llm.base import EngineRejected
from aigw.errors import EngineBusy, EngineUnavailable
from doubles.ollama import OllamaProtocolDouble, text_vector
from doubles.openai_embeddings import OpenAIEmbeddingsDouble


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def prose_chunks(count: int, chars: int = 800) -> list[str]:
    """Real English text in windows of about `chars` characters: the docstrings of some standard modules."""
    import argparse
    import asyncio as asyncio_module
    import collections
    import json
    import logging
    import pathlib
    import subprocess
    import threading

    docs = []
    for module in (argparse, asyncio_module, collections, json, logging, pathlib, subprocess, threading):
        for _, member in inspect.getmembers(module):
            doc = inspect.getdoc(member)
            if doc and len(doc) > 200:
                docs.append(doc)
    text = " ".join(" ".join(docs).split())
    chunks = textwrap.wrap(text, chars)[:count]
    assert len(chunks) == count
    return chunks


def cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def unit(vector: list[float]) -> np.ndarray[Any, Any]:
    array = np.asarray(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


# -- the local engine, on the real model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[SentenceTransformerEngine]:
    engine = SentenceTransformerEngine()
    await engine.warm()
    yield engine
    await engine.close()


def test_local_engine_satisfies_the_embedding_engine_protocol_before_loading() -> None:
    engine = SentenceTransformerEngine()

    assert isinstance(engine, EmbeddingEngine)
    assert engine.modality == "embeddings"
    assert engine.model_id == "all-MiniLM-L6-v2"
    assert engine.dimensions == 384
    assert engine.max_batch == 32


async def test_local_engine_embeds_real_text_as_unit_rows_of_384(local: SentenceTransformerEngine) -> None:
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "Wie spät ist es?"]

    vectors = await local.embed(texts)

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert await local.ready() is True


async def test_a_paraphrase_is_closer_than_an_unrelated_sentence(local: SentenceTransformerEngine) -> None:
    query, paraphrase, unrelated = await local.embed(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten password?",
            "The train to Lyon leaves from platform four.",
        ],
        purpose="query",
    )

    assert query @ paraphrase > 0.6
    assert query @ paraphrase > query @ unrelated + 0.4


async def test_the_same_text_gives_the_same_vector(local: SentenceTransformerEngine) -> None:
    text = "Invoices are due thirty days after the date of issue."

    alone, again = await local.embed([text]), await local.embed([text])
    in_a_batch = await local.embed(["Something else entirely, and rather longer than the text itself.", text])

    np.testing.assert_array_equal(alone, again)
    # Padded beside a longer text it goes through different kernel shapes: equal to rounding, not bit for bit.
    assert cosine(alone[0], in_a_batch[1]) > 0.9999


async def test_empty_input_gives_no_rows_without_touching_the_model(local: SentenceTransformerEngine) -> None:
    vectors = await local.embed([])

    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_one_string_instead_of_a_list_is_a_type_error(local: SentenceTransformerEngine) -> None:
    with pytest.raises(TypeError, match="not one string"):
        await local.embed("a single string")


@pytest.mark.skipif(not cpu_has_bf16(), reason="the CPU has no native bfloat16 (avx512_bf16 or amx_bf16)")
async def test_bfloat16_autocast_stays_within_rounding_of_float32(local: SentenceTransformerEngine) -> None:
    assert local.dtype == "bfloat16"  # "auto" on a CPU with native bfloat16
    fp32 = SentenceTransformerEngine(name="minilm-fp32", dtype="float32")
    try:
        chunks = prose_chunks(32)
        exact, fast = await fp32.embed(chunks), await local.embed(chunks)
    finally:
        await fp32.close()

    assert cosine(exact, fast).min() > 0.999


async def test_a_query_is_served_before_document_batches_already_queued(local: SentenceTransformerEngine) -> None:
    # Ingestion submits a document 32 chunks per call; six calls wait when a search comes in.
    chunks = prose_chunks(6 * 32, chars=300)
    finished: list[str] = []

    def track(label: str, job: asyncio.Task[Any]) -> asyncio.Task[Any]:
        job.add_done_callback(lambda _: finished.append(label))
        return job

    documents = [
        track(f"document {i}", asyncio.create_task(local.embed(chunks[i * 32 : (i + 1) * 32]))) for i in range(6)
    ]
    await asyncio.sleep(0)  # every document batch is submitted; the worker has taken at most the first
    query = track("query", asyncio.create_task(local.embed(["where is the refund policy?"], purpose="query")))
    await asyncio.gather(query, *documents)

    # At most the batch already in progress finishes first.
    assert finished.index("query") <= 1, finished
    assert [label for label in finished if label != "query"] == [f"document {i}" for i in range(6)]


async def test_a_long_document_job_is_encoded_batch_by_batch_so_a_query_overtakes_it(
    local: SentenceTransformerEngine,
) -> None:
    document = asyncio.create_task(local.embed(prose_chunks(6 * 32, chars=300)))
    await asyncio.sleep(0)

    vectors = await local.embed(["where is the refund policy?"], purpose="query")

    assert vectors.shape == (1, 384)
    assert not document.done()
    assert (await document).shape == (6 * 32, 384)


async def test_past_max_queue_jobs_waiting_the_engine_is_busy_and_a_cancelled_job_frees_its_place() -> None:
    engine = SentenceTransformerEngine(name="minilm-small-queue", max_queue=2)
    try:
        await engine.warm()
        running = asyncio.create_task(engine.embed(prose_chunks(4 * 32, chars=300)))
        await asyncio.sleep(0)
        while engine.queued:  # until the worker has taken it: a started job no longer waits
            await asyncio.sleep(0.001)
        waiting = [asyncio.create_task(engine.embed([f"waiting {i}"])) for i in range(2)]
        await asyncio.sleep(0)
        assert engine.queued == 2

        with pytest.raises(EngineBusy) as busy:
            await engine.embed(["one too many"])
        assert busy.value.status == 503
        assert int(busy.value.headers["Retry-After"]) >= 1

        waiting[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        assert engine.queued == 1
        accepted = await asyncio.gather(running, waiting[1], engine.embed(["now there is room"]))
        assert [len(vectors) for vectors in accepted] == [4 * 32, 1, 1]
    finally:
        await engine.close()


async def test_closing_fails_the_jobs_still_waiting_instead_of_leaving_them_hanging() -> None:
    engine = SentenceTransformerEngine(name="minilm-closing")
    await engine.warm()
    running = asyncio.create_task(engine.embed(prose_chunks(4 * 32, chars=300)))
    waiting = asyncio.create_task(engine.embed(["waiting"]))
    await asyncio.sleep(0)

    await engine.close()

    for job in (running, waiting):  # the running job stops after its batch in progress
        with pytest.raises(EngineUnavailable, match="shut down"):
            await job


async def test_jobs_after_close_are_refused() -> None:
    engine = SentenceTransformerEngine(name="minilm-closed")
    await engine.close()

    with pytest.raises(EngineUnavailable, match="shut down"):
        await engine.embed(["hello"])


async def test_a_missing_model_directory_is_not_ready_and_unavailable(tmp_path: Path) -> None:
    engine = SentenceTransformerEngine(name="nowhere", model_path=tmp_path / "no-such-model")
    try:
        assert await engine.ready() is False
        assert engine.dimensions is None
        assert engine.model_id == "no-such-model"
        with pytest.raises(EngineUnavailable) as missing:
            await engine.embed(["hello"])
        assert missing.value.code == "model_missing"
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16", True), ("fpu avx2 avx512f", False)],
)
def test_bf16_is_detected_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")

    assert cpu_has_bf16(cpuinfo) is expected
    assert cpu_has_bf16(tmp_path / "unreadable") is False


# -- the factory and its configuration --------------------------------------------------------------------------


def test_the_factory_builds_the_configured_engine() -> None:
    local = build_embedding_engine(EmbeddingConfig())
    ollama = build_embedding_engine(
        EmbeddingConfig(engine="ollama", base_url="http://gpu-box:11434", model="nomic-embed-text")
    )
    openai = build_embedding_engine(
        EmbeddingConfig(engine="openai", base_url="https://api.example.com/v1", model="text-embedding-3-small")
    )

    assert isinstance(local, SentenceTransformerEngine)
    assert (local.name, local.model_id) == ("minilm", "all-MiniLM-L6-v2")
    assert isinstance(ollama, OllamaEmbeddingEngine)
    assert ollama.model_id == "ollama:nomic-embed-text"
    assert isinstance(openai, OpenAIEmbeddingEngine)
    assert openai.model_id == "openai:text-embedding-3-small"
    assert len({local.name, ollama.name, openai.name}) == 3


@pytest.mark.parametrize(
    "fields",
    [
        {"engine": "ollama", "model": "nomic-embed-text"},
        {"engine": "openai", "base_url": "http://x/v1"},
        {"engine": "local", "temperature": 0.2},
        {"engine": "local", "threads": 0},
        {"engine": "local", "dtype": "float16"},
    ],
)
def test_an_incomplete_or_unknown_embedding_config_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EmbeddingConfig(**fields)


# -- the remote engines, against protocol doubles --------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_double() -> Iterator[OpenAIEmbeddingsDouble]:
    double = OpenAIEmbeddingsDouble().start()
    yield double
    double.stop()


@pytest.fixture
async def ollama(ollama_double: OllamaProtocolDouble) -> AsyncIterator[OllamaEmbeddingEngine]:
    engine = OllamaEmbeddingEngine(name="ollama-embed", base_url=ollama_double.url, model="nomic-embed-text")
    yield engine
    await engine.close()


@pytest.fixture
async def openai(openai_double: OpenAIEmbeddingsDouble) -> AsyncIterator[OpenAIEmbeddingEngine]:
    engine = OpenAIEmbeddingEngine(
        name="openai-embed", base_url=openai_double.url, model="text-embedding-3-small", api_key="sk-test"
    )
    yield engine
    await engine.close()


@dataclass
class Remote:
    """One remote engine with its double, seen the same way: what it was sent, and what to send it next."""

    engine: OllamaEmbeddingEngine | OpenAIEmbeddingEngine
    sent: Callable[[], list[list[str]]]  # the inputs of each request, in order
    reply_status: Callable[[int, str], None]
    reply_vectors: Callable[[list[Any]], None]  # a 200 answer carrying exactly these "vectors"


@pytest.fixture(params=["ollama", "openai"])
async def remote(
    request: pytest.FixtureRequest, ollama_double: OllamaProtocolDouble, openai_double: OpenAIEmbeddingsDouble
) -> AsyncIterator[Remote]:
    if request.param == "ollama":
        engine: OllamaEmbeddingEngine | OpenAIEmbeddingEngine = OllamaEmbeddingEngine(
            name="ollama-embed", base_url=ollama_double.url, model="nomic-embed-text", max_batch=3
        )
        seen = len(ollama_double.embed_requests)
        yield Remote(
            engine,
            lambda: [body["input"] for body in ollama_double.embed_requests[seen:]],
            ollama_double.reply_embed_status,
            lambda rows: ollama_double.reply_embed_body({"model": "nomic-embed-text", "embeddings": rows}),
        )
    else:
        engine = OpenAIEmbeddingEngine(
            name="openai-embed", base_url=openai_double.url, model="text-embedding-3-small", max_batch=3
        )
        seen = len(openai_double.requests)
        yield Remote(
            engine,
            lambda: [body["input"] for _, body in openai_double.requests[seen:]],
            openai_double.reply_status,
            lambda rows: openai_double.reply_body(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)],
                }
            ),
        )
    await engine.close()


def test_remote_engines_satisfy_the_embedding_engine_protocol() -> None:
    for engine in (
        OllamaEmbeddingEngine(name="o", base_url="http://127.0.0.1:1", model="m"),
        OpenAIEmbeddingEngine(name="a", base_url="http://127.0.0.1:1/v1", model="m"),
    ):
        assert isinstance(engine, EmbeddingEngine)
        assert engine.modality == "embeddings"
        assert engine.dimensions is None


async def test_ollama_posts_model_and_inputs_to_api_embed(
    ollama: OllamaEmbeddingEngine, ollama_double: OllamaProtocolDouble
) -> None:
    vectors = await ollama.embed(["first text", "second text"], purpose="query")

    assert ollama_double.embed_requests[-1] == {"model": "nomic-embed-text", "input": ["first text", "second text"]}
    np.testing.assert_allclose(vectors, [unit(text_vector(t, 8)) for t in ("first text", "second text")], rtol=1e-6)
    assert vectors.dtype == np.float32
    assert ollama.dimensions == 8
    assert await ollama.ready() is True


async def test_openai_posts_float_encoding_with_the_key(
    openai: OpenAIEmbeddingEngine, openai_double: OpenAIEmbeddingsDouble
) -> None:
    vectors = await openai.embed(["first text", "second text"])

    headers, body = openai_double.last_request
    assert headers["authorization"] == "Bearer sk-test"
    assert body == {
        "model": "text-embedding-3-small",
        "input": ["first text", "second text"],
        "encoding_format": "float",
    }
    np.testing.assert_allclose(vectors, [unit(text_vector(t, 8)) for t in ("first text", "second text")], rtol=1e-6)
    assert openai.dimensions == 8
    assert await openai.ready() is True


async def test_openai_vectors_are_placed_by_index_not_by_position(
    openai: OpenAIEmbeddingEngine, openai_double: OpenAIEmbeddingsDouble
) -> None:
    texts = ["alpha", "beta", "gamma"]
    openai_double.reply_reversed()

    vectors = await openai.embed(texts)

    np.testing.assert_allclose(vectors, [unit(text_vector(t, 8)) for t in texts], rtol=1e-6)


async def test_remote_batches_split_into_max_batch_requests_in_order(remote: Remote) -> None:
    texts = [f"text number {i}" for i in range(8)]

    vectors = await remote.engine.embed(texts)

    assert remote.sent() == [texts[0:3], texts[3:6], texts[6:8]]
    np.testing.assert_allclose(vectors, [unit(text_vector(t, 8)) for t in texts], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


async def test_remote_empty_input_sends_nothing(remote: Remote) -> None:
    before = await remote.engine.embed([])
    await remote.engine.embed(["one"])
    after = await remote.engine.embed([])

    assert remote.sent() == [["one"]]
    assert before.shape == (0, 0)
    assert after.shape == (0, 8)


async def test_remote_server_error_is_engine_unavailable(remote: Remote) -> None:
    remote.reply_status(500, "llama runner process has terminated")

    with pytest.raises(EngineUnavailable, match="llama runner process has terminated"):
        await remote.engine.embed(["hello"])


async def test_remote_bad_request_is_rejected_with_the_upstream_message(remote: Remote) -> None:
    remote.reply_status(400, "input length exceeds the context length")

    with pytest.raises(EngineRejected, match="input length exceeds the context length"):
        await remote.engine.embed(["hello"])


async def test_a_failing_batch_fails_the_whole_call(remote: Remote) -> None:
    remote.reply_vectors([[1.0, 0.0]] * 3)
    remote.reply_status(503, "overloaded")

    with pytest.raises(EngineUnavailable, match="overloaded"):
        await remote.engine.embed([f"t{i}" for i in range(6)])


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([[1.0, 2.0]], "expected 2 vectors"),
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], "unequal length"),
        ([[1.0, 2.0], ["a", "b"]], "not numbers"),
        ([[], []], "shape"),
    ],
)
async def test_remote_malformed_vectors_are_engine_unavailable(remote: Remote, rows: list[Any], problem: str) -> None:
    remote.reply_vectors(rows)

    with pytest.raises(EngineUnavailable, match=f"malformed response.*{problem}"):
        await remote.engine.embed(["one", "two"])


async def test_ollama_reply_without_embeddings_is_engine_unavailable(
    ollama: OllamaEmbeddingEngine, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_embed_body({"model": "nomic-embed-text"})

    with pytest.raises(EngineUnavailable, match="no embeddings"):
        await ollama.embed(["hello"])


async def test_openai_reply_with_wrong_indexes_is_engine_unavailable(
    openai: OpenAIEmbeddingEngine, openai_double: OpenAIEmbeddingsDouble
) -> None:
    item = {"object": "embedding", "index": 0, "embedding": [1.0, 2.0]}
    openai_double.reply_body({"object": "list", "data": [item, item]})

    with pytest.raises(EngineUnavailable, match=r"indexed 0\.\.1"):
        await openai.embed(["one", "two"])


async def test_a_change_of_vector_size_between_calls_is_engine_unavailable(remote: Remote) -> None:
    await remote.engine.embed(["first"])
    remote.reply_vectors([[1.0, 2.0, 3.0]])

    with pytest.raises(EngineUnavailable, match="3-dimensional vectors, earlier 8-dimensional"):
        await remote.engine.embed(["second"])


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_connection_refused_is_engine_unavailable_and_not_ready(kind: str) -> None:
    url = closed_port_url()
    engine: OllamaEmbeddingEngine | OpenAIEmbeddingEngine
    if kind == "ollama":
        engine = OllamaEmbeddingEngine(name="gone", base_url=url, model="m", timeout=2)
    else:
        engine = OpenAIEmbeddingEngine(name="gone", base_url=url + "/v1", model="m", timeout=2)
    try:
        with pytest.raises(EngineUnavailable, match="gone"):
            await engine.embed(["hello"])
        assert await engine.ready() is False
    finally:
        await engine.close()
