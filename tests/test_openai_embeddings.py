"""POST /v1/embeddings and the embedding entry of GET /v1/models, through the official `openai` SDK and plain HTTP:
on the embedded all-MiniLM-L6-v2 (the `gateway` servers, SQLite and PostgreSQL) and on an Ollama embedding backend
(a gateway configured with the Ollama protocol double)."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import Gateway, start_gateway
from doubles.ollama import OllamaProtocolDouble, text_vector

MODEL = "all-minilm-l6-v2"
PASSWORD = "How do I reset my password?"
PARAPHRASE = "What are the steps to change a forgotten password?"
UNRELATED = "The train to Lyon leaves from platform four."


SDK = Callable[[Gateway, str], Any]


@pytest.fixture
def openai_client() -> Iterator[SDK]:
    """Makes official `openai` SDK clients on a gateway with a key, and closes them after the test."""
    from openai import OpenAI

    clients: list[OpenAI] = []

    def make(gw: Gateway, key: str) -> OpenAI:
        clients.append(OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=120))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The packaged model's own tokenizer, to know the token ids and counts the gateway should see."""
    from transformers import AutoTokenizer

    from aigw.engines.embed.local import packaged_model_path

    return AutoTokenizer.from_pretrained(str(packaged_model_path()), local_files_only=True)


def post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return gw.client(key, timeout=120).post("/v1/embeddings", json=body)


def rows(resp: httpx.Response) -> np.ndarray[Any, Any]:
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert [item["index"] for item in data] == list(range(len(data)))
    return np.asarray([item["embedding"] for item in data], dtype=np.float32)


# -- the embedded model -------------------------------------------------------------------------------------------


def test_openai_sdk_embeds_with_the_embedded_model_as_384_d_unit_vectors(
    openai_client: SDK, gateway: Gateway, tokenizer: Any
) -> None:
    client = openai_client(gateway, gateway.new_user().key)
    texts = [PASSWORD, PARAPHRASE, UNRELATED]

    result = client.embeddings.create(model=MODEL, input=texts)

    assert result.object == "list"
    assert result.model == MODEL
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(item.object == "embedding" for item in result.data)
    vectors = np.asarray([item.embedding for item in result.data])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query, paraphrase, unrelated = vectors
    assert query @ paraphrase > 0.6
    assert query @ paraphrase > query @ unrelated + 0.4
    expected = sum(len(ids) for ids in tokenizer(texts)["input_ids"])  # [CLS] and [SEP] included
    assert result.usage.prompt_tokens == result.usage.total_tokens == expected


def test_base64_and_float_encodings_carry_the_same_float32_vectors(openai_client: SDK, gateway: Gateway) -> None:
    key = gateway.new_user().key
    texts = ["Invoices are due thirty days after the date of issue.", "Le chat dort sur le canapé."]

    as_floats = post(gateway, key, {"model": MODEL, "input": texts, "encoding_format": "float"})
    as_base64 = post(gateway, key, {"model": MODEL, "input": texts, "encoding_format": "base64"})
    # The SDK asks for base64 when no format is given and decodes it itself.
    from_sdk = openai_client(gateway, key).embeddings.create(model=MODEL, input=texts)

    floats = rows(as_floats)
    assert as_base64.status_code == 200, as_base64.text
    encoded = [item["embedding"] for item in as_base64.json()["data"]]
    assert all(isinstance(text, str) for text in encoded)
    decoded = np.stack([np.frombuffer(base64.b64decode(text), dtype="<f4") for text in encoded])
    assert decoded.shape == (2, 384)
    np.testing.assert_array_equal(decoded, floats)
    np.testing.assert_array_equal(np.asarray([item.embedding for item in from_sdk.data], dtype=np.float32), floats)
    assert as_base64.json()["usage"] == as_floats.json()["usage"]


def test_token_arrays_are_read_with_the_models_tokenizer(openai_client: SDK, gateway: Gateway, tokenizer: Any) -> None:
    client = openai_client(gateway, gateway.new_user().key)
    password_ids, unrelated_ids = tokenizer([PASSWORD, UNRELATED])["input_ids"]

    by_text = client.embeddings.create(model=MODEL, input=[PASSWORD, UNRELATED], encoding_format="float")
    by_ids = client.embeddings.create(model=MODEL, input=[password_ids, unrelated_ids], encoding_format="float")
    one_array = client.embeddings.create(model=MODEL, input=password_ids, encoding_format="float")

    texts = np.asarray([item.embedding for item in by_text.data])
    ids = np.asarray([item.embedding for item in by_ids.data])
    np.testing.assert_allclose(ids, texts, atol=1e-5)
    assert len(one_array.data) == 1
    np.testing.assert_allclose(one_array.data[0].embedding, texts[0], atol=1e-5)
    assert by_ids.usage.prompt_tokens == len(password_ids) + len(unrelated_ids)


def test_one_string_and_the_model_id_spelling_are_accepted(gateway: Gateway) -> None:
    key = gateway.new_user().key

    resp = post(gateway, key, {"model": "all-MiniLM-L6-v2", "input": PASSWORD, "dimensions": 384, "user": "u-1"})

    assert rows(resp).shape == (1, 384)
    assert resp.json()["model"] == MODEL
    assert resp.json()["object"] == "list"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "text-embedding-3-small", "input": "hi"}, 404, "model_not_found"),
        ({"model": MODEL, "input": ""}, 422, "empty_input"),
        ({"model": MODEL, "input": []}, 422, "empty_input"),
        ({"model": MODEL, "input": ["fine", ""]}, 422, "empty_input"),
        ({"model": MODEL, "input": [[101, 102], []]}, 422, "empty_input"),
        ({"model": MODEL, "input": 42}, 422, "invalid"),
        ({"model": MODEL, "input": ["text", 7]}, 422, "invalid"),
        ({"model": MODEL, "input": [True, False]}, 422, "invalid"),
        ({"model": MODEL, "input": [[101, "a"]]}, 422, "invalid"),
        ({"model": MODEL, "input": [101, 999_999, 102]}, 422, "invalid_token_id"),
        ({"model": MODEL, "input": [[101, 102], [-1]]}, 422, "invalid_token_id"),
        ({"model": MODEL, "input": ["x"] * 2049}, 422, "too_many_inputs"),
        ({"model": MODEL, "input": [[101]] * 2049}, 422, "too_many_inputs"),
        ({"model": MODEL, "input": [1] * 300_001}, 413, "input_too_large"),
        ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, 422, "invalid"),
        ({"model": MODEL, "input": "hi", "dimensions": 256}, 422, "dimensions_not_supported"),
        ({"model": MODEL, "input": "hi", "dimensions": 0}, 422, "invalid"),
        ({"input": "hi"}, 422, "invalid"),
    ],
)
def test_bad_requests_are_json_errors_with_a_code(
    gateway: Gateway, body: dict[str, Any], status: int, code: str
) -> None:
    resp = post(gateway, gateway.admin_key, body)

    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()
    assert error["code"] == code
    assert isinstance(error["error"], str) and error["error"]


def test_the_input_shape_error_says_what_is_accepted(gateway: Gateway) -> None:
    resp = post(gateway, gateway.admin_key, {"model": MODEL, "input": {"text": "hi"}})

    assert resp.status_code == 422
    assert "a string, a list of strings, a list of token ids or a list of lists of token ids" in resp.json()["error"]


def test_openai_sdk_raises_its_status_errors(openai_client: SDK, gateway: Gateway) -> None:
    import openai

    client = openai_client(gateway, gateway.new_user().key)

    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-large", input="hi")
    with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
        client.embeddings.create(model=MODEL, input="hi", dimensions=128)
    error = unprocessable.value.response.json()
    assert error["code"] == "dimensions_not_supported"
    assert "not trained to be shortened" in error["error"]
    with pytest.raises(openai.AuthenticationError):
        openai_client(gateway, "aigw_" + "0" * 43).embeddings.create(model=MODEL, input="hi")


def test_models_lists_the_embedding_model_after_the_chat_models(openai_client: SDK, gateway: Gateway) -> None:
    models = openai_client(gateway, gateway.new_user().key).models.list()

    ids = [model.id for model in models.data]
    assert ids == ["qwen2.5-coder-0.5b", MODEL]
    assert all(model.owned_by == "aigw" and model.object == "model" for model in models.data)


def test_embedding_calls_are_rate_limited_and_recorded_with_their_tokens(gateway: Gateway) -> None:
    user = gateway.new_user(rate_limit=2)
    body = {"model": MODEL, "input": ["one short text", "and another"]}

    first, second, third = (post(gateway, user.key, body) for _ in range(3))

    assert [first.status_code, second.status_code] == [200, 200]
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    assert third.json()["code"] == "rate_limited"
    tokens = first.json()["usage"]["prompt_tokens"]
    # The usage record is written as the response ends, so it can trail the client by a moment.
    deadline = time.monotonic() + 30
    while True:
        usage = gateway.admin().get("/api/admin/usage", params={"period": "24h"})
        assert usage.status_code == 200, usage.text
        mine = [row for row in usage.json() if row["user_id"] == user.id and row["endpoint"] == "/v1/embeddings"]
        if (mine and mine[0]["count"] == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert mine[0]["count"] == 3
    assert mine[0]["prompt_tokens"] == 2 * tokens
    assert mine[0]["completion_tokens"] == 0


# -- an Ollama embedding backend ------------------------------------------------------------------------------------

OLLAMA_MODEL = "nomic-embed-text"


@pytest.fixture(scope="module")
def ollama_gateway(tmp_path_factory: pytest.TempPathFactory, ollama_double: OllamaProtocolDouble) -> Iterator[Gateway]:
    embedding = {"engine": "ollama", "base_url": ollama_double.url, "model": OLLAMA_MODEL, "timeout": 10}
    gw = start_gateway(tmp_path_factory.mktemp("gw-ollama-embed"), AIGW_EMBEDDING=json.dumps(embedding))
    yield gw
    gw.stop()


def unit(vector: list[float]) -> np.ndarray[Any, Any]:
    array = np.asarray(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


def test_openai_sdk_embeds_through_an_ollama_backend(
    openai_client: SDK, ollama_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    client = openai_client(ollama_gateway, ollama_gateway.new_user().key)
    texts = ["first text", "a second, longer text"]
    seen = len(ollama_double.embed_requests)

    result = client.embeddings.create(model=OLLAMA_MODEL, input=texts)

    assert ollama_double.embed_requests[seen:] == [{"model": OLLAMA_MODEL, "input": texts}]
    assert result.model == OLLAMA_MODEL
    vectors = np.asarray([item.embedding for item in result.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, [unit(text_vector(text, 8)) for text in texts], rtol=1e-6)
    # Estimated at four characters a token: the upstream's own count does not reach the gateway.
    assert result.usage.prompt_tokens == sum(math.ceil(len(text) / 4) for text in texts)


def test_ollama_backend_takes_its_model_id_and_is_listed(openai_client: SDK, ollama_gateway: Gateway) -> None:
    key = ollama_gateway.new_user().key

    resp = post(ollama_gateway, key, {"model": f"ollama:{OLLAMA_MODEL}", "input": "hello", "encoding_format": "float"})
    models = openai_client(ollama_gateway, key).models.list()

    assert rows(resp).shape == (1, 8)
    assert resp.json()["model"] == OLLAMA_MODEL
    assert [model.id for model in models.data] == ["qwen2.5-coder-0.5b", OLLAMA_MODEL]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": OLLAMA_MODEL, "input": [101, 2023, 102]}, 422, "token_input_unsupported"),
        ({"model": OLLAMA_MODEL, "input": "hello", "dimensions": 4}, 422, "dimensions_not_supported"),
        ({"model": MODEL, "input": "hello"}, 404, "model_not_found"),
    ],
)
def test_ollama_backend_refusals(ollama_gateway: Gateway, body: dict[str, Any], status: int, code: str) -> None:
    resp = post(ollama_gateway, ollama_gateway.admin_key, body)

    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code


def test_an_ollama_failure_is_503_engine_unavailable(
    ollama_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_embed_status(500, "llama runner process has terminated")

    resp = post(ollama_gateway, ollama_gateway.admin_key, {"model": OLLAMA_MODEL, "input": "hello"})

    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "engine_unavailable"
    assert "llama runner process has terminated" in resp.json()["error"]
