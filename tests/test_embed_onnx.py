"""The embedded embedding model on ONNX Runtime with int8 weights (engines/embed/onnx.py), against torch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from aigw.engines.embed import EmbeddingConfig, build_embedding_engine
from aigw.engines.embed.local import SentenceTransformerEngine, packaged_model_path
from aigw.engines.embed.onnx import mean_pooled

TEXTS = [
    "How do I reset my password?",
    "What are the steps to change a forgotten password?",
    "The train to Lyon leaves from platform four.",
    "journald keeps logs in /var/log/journal when Storage=persistent is set, " * 12,  # past the 256-token cut
]


@pytest.fixture(scope="module")
async def torch_engine() -> AsyncIterator[SentenceTransformerEngine]:
    engine = SentenceTransformerEngine(name="minilm-torch", dtype="float32", runtime="torch")
    await engine.warm()
    yield engine
    await engine.close()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-models")


async def onnx_engine(models_dir: Path) -> SentenceTransformerEngine:
    engine = build_embedding_engine(EmbeddingConfig(), models_dir)
    assert isinstance(engine, SentenceTransformerEngine) and engine.runtime == "onnx"
    await engine.warm()
    return engine


async def test_onnx_int8_vectors_agree_with_torch_and_keep_the_ranking(
    torch_engine: SentenceTransformerEngine, models_dir: Path
) -> None:
    engine = await onnx_engine(models_dir)
    try:
        fast = await engine.embed(TEXTS, purpose="query")
        # Several texts run one per thread, longest first: each comes back in its place, as it is alone.
        alone = np.concatenate([await engine.embed([text], purpose="query") for text in TEXTS])
        reordered = await engine.embed(TEXTS[::-1], purpose="document")
        assert (models_dir / "all-MiniLM-L6-v2.int8.onnx").is_file()
    finally:
        await engine.close()
    exact = await torch_engine.embed(TEXTS, purpose="query")
    assert fast.shape == exact.shape == (4, 384)
    np.testing.assert_allclose(fast, alone, atol=1e-4)
    np.testing.assert_allclose(fast, reordered[::-1], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(fast * exact, axis=1)) > 0.98
    query, paraphrase, unrelated = fast[:3]
    assert query @ paraphrase > query @ unrelated + 0.4


async def test_a_lost_or_damaged_export_is_made_again(models_dir: Path) -> None:
    engine = await onnx_engine(models_dir)
    await engine.close()
    exported = models_dir / "all-MiniLM-L6-v2.int8.onnx"
    exported.write_bytes(b"not a model")
    (models_dir / "all-MiniLM-L6-v2.int8.json").unlink()
    engine = await onnx_engine(models_dir)
    try:
        assert exported.stat().st_size > 10_000_000
        assert (await engine.embed(["still works"])).shape == (1, 384)
    finally:
        await engine.close()


def test_only_mean_pooled_models_are_exported(tmp_path: Path) -> None:
    assert mean_pooled(packaged_model_path())
    assert not mean_pooled(tmp_path)  # no modules.json: stays on torch
