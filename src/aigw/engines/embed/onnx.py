"""A sentence-transformers model run by ONNX Runtime with int8 weights: ~10 ms a query instead of ~25 on two cores.

The ONNX graph is exported from the loaded model's own weights by torch's exporter (nothing is written by
hand) and its MatMul weights are quantised per channel to int8 by onnxruntime, once, into the models dir,
under a file lock so several workers starting together export it once. A sidecar records the SHA-256 of
the weights it came from; other weights, a missing or unreadable file mean a new export. Measured on the
packaged MiniLM (bench/embed_raw.py, bench/kb_quality.py): cosine to the float32 vectors >= 0.99 and the
same retrieval quality. onnxruntime's default int8 settings (per tensor, all ops) lost too much.

Only models that are a transformer followed by mean pooling (and normalisation) are exported; others
stay on torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aigw.engines.embed.base import Vectors, unit_rows

log = logging.getLogger("aigw.engines.embed")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_FORMAT = 1  # bump when the export or quantisation recipe changes


def mean_pooled(model_dir: Path) -> bool:
    """Whether the sentence-transformers model in `model_dir` is a transformer, mean pooling and maybe a normaliser."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return (
        kinds[:2] == ["Transformer", "Pooling"]
        and set(kinds[2:]) <= {"Normalize"}
        and modes == {"pooling_mode_mean_tokens"}
    )


def weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256(str(_FORMAT).encode())
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        with open(path, "rb") as fh:
            while chunk := fh.read(8 * 1024 * 1024):
                digest.update(chunk)
    return digest.hexdigest()


def int8_model(transformer: Any, model_dir: Path, models_dir: Path, name: str) -> Path:
    """The path of the int8 ONNX export of `transformer` (a Hugging Face model), exporting it on first use."""
    target = models_dir / f"{name}.int8.onnx"
    sidecar = target.with_suffix(".json")
    digest = weights_digest(model_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{target.name}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if target.is_file() and json.loads(sidecar.read_text()).get("weights_sha256") == digest:
                return target
        except (OSError, ValueError):
            pass
        log.info("exporting the embedding model to ONNX (int8), once", extra={"model": name})
        _export(transformer, target)
        sidecar.write_text(json.dumps({"weights_sha256": digest, "format": _FORMAT}))
    return target


def _export(transformer: Any, target: Path) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    example = torch.ones((2, 8), dtype=torch.long)
    fp32 = target.with_name(f".{target.stem}.fp32.onnx")
    partial = target.with_name(f".{target.name}.partial")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    # The TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript) and warns about
    # traced shape checks; it exports this fixed-structure encoder correctly (checked against torch's vectors).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(transformer.eval()),
            (example, example, torch.zeros_like(example)),
            str(fp32),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    try:
        quantize_dynamic(
            str(fp32), str(partial), per_channel=True, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8
        )
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        partial.replace(target)
    finally:
        fp32.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


class OnnxEncoder:
    """Mean-pooled, L2-normalised sentence vectors from an ONNX transformer, as sentence-transformers computes them.

    One text (a question) runs on all the threads at once, for latency. Several texts (a document's chunks) run
    one per thread, each on one core: on two cores that embedded a document ~1.4x faster than two threads on
    each text in turn (bench/README.md, "500 KB document").
    """

    def __init__(self, path: Path, tokenizer: Any, max_length: int | None, threads: int | None) -> None:
        import onnxruntime

        self._threads = max(1, threads or os.cpu_count() or 1)

        def session(intra_op_threads: int) -> Any:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
            return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self._session = session(self._threads)
        # One session runs on the calling thread (one intra-op thread); onnxruntime allows concurrent runs.
        self._single = session(1) if self._threads > 1 else self._session
        self._pool = ThreadPoolExecutor(self._threads, "aigw-onnx") if self._threads > 1 else None
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._lock = threading.Lock()  # the Rust tokenizer is not to be used by two threads at once

    def encode(self, texts: list[str]) -> Vectors:
        # One text per run: int8 activations are quantised with one scale per input tensor, so a text batched
        # with others came out different (cosine 0.995 to itself alone). Unbatched is as fast here (no padding).
        feeds = self._feeds(texts)
        if self._pool is None or len(feeds) == 1:
            pooled = [self._run(self._session, feed) for feed in feeds]
        else:
            # Longest first, so the threads finish together.
            order = sorted(range(len(feeds)), key=lambda i: -feeds[i]["input_ids"].shape[1])
            done = self._pool.map(lambda i: self._run(self._single, feeds[i]), order)
            pooled = [vector for _, vector in sorted(zip(order, done, strict=True), key=lambda pair: pair[0])]
        return unit_rows(np.concatenate(pooled))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _feeds(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        with self._lock:
            batch = self._tokenizer(texts, truncation=True, max_length=self._max_length)
        feeds = []
        for row in range(len(texts)):
            feed = {name: np.asarray([batch[name][row]], dtype=np.int64) for name in _INPUTS if name in batch}
            if "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            feeds.append({k: v for k, v in feed.items() if k in self._inputs})
        return feeds

    @staticmethod
    def _run(session: Any, feed: dict[str, np.ndarray]) -> Vectors:
        hidden = session.run(None, feed)[0]
        pooled: Vectors = hidden.mean(axis=1).astype(np.float32)  # one unpadded text: every token counts
        return pooled
