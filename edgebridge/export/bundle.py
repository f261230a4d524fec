"""Bundle: a self-describing directory that moves from the workstation to the device.

``manifest.json`` (SignalSpec, labels, IO names/shapes, precisions with parity and task metrics, calibration
provenance, versions, sha256 of every file, and a sha256 of the manifest itself) plus ``model.<precision>.onnx``
files and ``check_windows.npz``. Written atomically (staging dir + rename); verified on every load. NumPy only:
``load_bundle`` runs on a device without torch or onnx. Field reference: docs/bundle_format.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.io import sha256_file  # noqa: F401  (re-exported: bundle.sha256_file)
from edgebridge.preprocess import Preprocessor
from edgebridge.spec import SignalSpec

log = logging.getLogger(__name__)

FORMAT_NAME = "edgebridge-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECK_WINDOWS = "check_windows.npz"
#: Directories a device may add inside a bundle without breaking verification (engines are built on the target).
LOCAL_DIRS = ("engines",)


class BundleError(ValueError):
    """A bundle is missing, malformed, or has been modified since export."""




def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the manifest without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@contextmanager
def staging_dir(out: str | Path) -> Iterator[Path]:
    """A fresh directory next to ``out`` (same file system, so the final rename is atomic); removed on error."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def finalize(staging: Path, out: str | Path, manifest: dict[str, Any], overwrite: bool = False) -> Path:
    """Hash every staged file into the manifest, write it, and move the directory to ``out`` in one rename.

    An existing ``out`` is replaced only with ``overwrite=True`` (moved aside first, deleted after the swap).
    """
    out = Path(out)
    files = {}
    for f in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = f.relative_to(staging).as_posix()
        if rel != MANIFEST:
            files[rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest = {**manifest, "files": files}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    old = None
    if out.exists():
        if not overwrite:
            raise BundleError(f"{out} exists; pass overwrite=True (or another out) to replace it")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old)
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Parse and self-check ``manifest.json``: format, version, and its own sha256."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise BundleError(f"{path} is not a bundle: no {MANIFEST}")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mf} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{mf}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mf}: format_version {manifest.get('format_version')!r} is not supported "
                          f"(this edgebridge reads {FORMAT_VERSION})")
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise BundleError(f"{mf} was edited after export (manifest_sha256 does not match its content)")
    return manifest


def verify_files(path: str | Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists with its sha256, and no unlisted file sits in the bundle."""
    path = Path(path)
    problems = []
    for rel, info in sorted(manifest["files"].items()):
        f = path / rel
        if not f.is_file():
            problems.append(f"missing {rel}")
        elif f.stat().st_size != info["bytes"] or sha256_file(f) != info["sha256"]:
            problems.append(f"{rel} changed (sha256 mismatch)")
    listed = set(manifest["files"]) | {MANIFEST}
    for f in path.rglob("*"):
        rel = f.relative_to(path)
        if f.is_file() and rel.as_posix() not in listed and rel.parts[0] not in LOCAL_DIRS:
            problems.append(f"unexpected file {rel.as_posix()}")
    if problems:
        raise BundleError(f"bundle {path} failed verification: " + "; ".join(problems))


def open_bundle(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """The verified manifest of the bundle at ``path``."""
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    return manifest


def load_check_windows(path: str | Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """The held-out check windows: ``x_new`` (N, C, T), ``labels`` (N,), and ``x_old`` when stored."""
    rel = manifest["check_windows"]["file"]
    with np.load(Path(path) / rel, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class LoadedBundle:
    """A bundle opened for inference on one precision and provider.

    ``predict(windows, fs_hz)`` takes raw windows at the sensor's rate and preprocesses them with
    ``Preprocessor(manifest spec, fs_hz)``; ``predict_preprocessed(x)`` feeds model inputs directly.
    Both return logits (B, K) float32.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], precision: str, backend: Any) -> None:
        self.path, self.manifest, self.precision, self.backend = path, manifest, precision, backend
        self.spec = SignalSpec.from_dict(manifest["spec"])
        self.class_names = tuple(manifest["class_names"])
        self._pre: dict[float, Preprocessor] = {}

    @property
    def provider(self) -> str:
        return self.backend.provider

    def preprocessor(self, fs_hz: float | None = None) -> Preprocessor:
        fs = float(self.spec.fs_hz if fs_hz is None else fs_hz)
        if fs not in self._pre:
            self._pre[fs] = Preprocessor(self.spec, fs)
        return self._pre[fs]

    def predict_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Shapes: x (B, C, T_model) or (C, T_model) -> logits (B, K)."""
        x = np.asarray(x, dtype=np.float32)
        return self.backend.run(x[None] if x.ndim == 2 else x)

    def predict(self, windows: np.ndarray, fs_hz: float | None = None) -> np.ndarray:
        """Shapes: windows (B, C, window_s·fs_hz) or (C, window_s·fs_hz) raw -> logits (B, K)."""
        windows = np.asarray(windows)
        windows = windows[None] if windows.ndim == 2 else windows
        return self.predict_preprocessed(self.preprocessor(fs_hz).batch(windows))

    def labels(self, logits: np.ndarray) -> list[str]:
        return [self.class_names[i] for i in np.asarray(logits).argmax(-1)]

    def check_windows(self) -> dict[str, np.ndarray]:
        return load_check_windows(self.path, self.manifest)


def load_bundle(path: str | Path, precision: str = "fp32", provider: str | None = None, verify: bool = True,
                **backend_kwargs: Any) -> LoadedBundle:
    """Open a bundle: verify every file's sha256, then build the backend of ``precision``.

    Args:
        path: bundle directory.
        precision: ``fp32`` / ``fp16`` / ``int8`` (must be present in the manifest).
        provider: ``cpu`` (default), ``cuda`` or ``tensorrt`` for ONNX Runtime.
        verify: re-hash every file (default; a tampered or broken bundle raises BundleError).
        backend_kwargs: e.g. ``threads=2`` for OrtBackend.
    """
    from edgebridge.runtime.backends import OrtBackend

    path = Path(path)
    manifest = open_bundle(path, verify=verify)
    if precision not in manifest["precisions"]:
        raise BundleError(f"bundle {path} has no {precision!r} model; present: {sorted(manifest['precisions'])}")
    file = path / manifest["precisions"][precision]["file"]
    backend = OrtBackend(file, provider=provider, precision=precision, **backend_kwargs)
    log.info("loaded %s (%s, %s)", path, precision, backend.provider)
    return LoadedBundle(path, manifest, precision, backend)
