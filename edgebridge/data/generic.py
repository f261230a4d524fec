"""SubjectLoader (the base every data-set reader builds on) and the ``generic`` loader for the user's own recordings.

A SubjectLoader lists subject ids from file names alone (so splits are decided before any data is read) and loads
one subject at a time (so a data set never has to fit in memory). Registered loaders are SubjectLoader instances:
calling one, ``get_loader("wesad")(root)``, yields Recordings subject by subject.

The generic loader reads a folder of EDF / CSV / NPZ files described by a small YAML file (``edgebridge.yaml``)
naming channels → modalities, rates and label files; docs/data.md has the schema.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.edf import EdfError, EdfReader
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, register_loader

log = logging.getLogger(__name__)
CONFIG_NAME = "edgebridge.yaml"


class DataError(ValueError):
    """A data-set file is missing, truncated or inconsistent with what the loader expects; the message names it."""


@dataclass(frozen=True)
class DatasetDefaults:
    """What ``prepare`` uses unless told otherwise: the modality pair, windowing, label rule, split fractions."""

    new: str
    old: str
    window_s: float
    stride_s: float
    min_label_fraction: float = 1.0  # 1.0 = the label must be constant over the window
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.3, "val": 0.15, "pair": 0.3, "test": 0.25})


def check_duration(n_samples: int, fs_hz: float, ref_s: float, where: str, tol_s: float = 1.0) -> None:
    """Raise DataError when ``n_samples`` at ``fs_hz`` does not span ``ref_s`` seconds (a channel at another rate)."""
    got_s = n_samples / fs_hz
    if abs(got_s - ref_s) > tol_s:
        raise DataError(f"{where}: {n_samples} samples at {fs_hz} Hz last {got_s:.1f} s but the recording lasts "
                        f"{ref_s:.1f} s — is this channel at another rate than {fs_hz} Hz?")


class SubjectLoader:
    """Base of every registered loader: ``subjects`` from file names, ``load`` one subject, iterate all.

    Subclasses set ``name`` and ``option_defaults`` and implement ``subjects``, ``load``, ``class_names`` and
    ``defaults``; those with a ``paper`` mode override ``paper_signals``.
    """

    name = "base"
    option_defaults: dict[str, Any] = {}

    def options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Loader options with defaults filled in; unknown names raise TypeError listing the known ones."""
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            raise TypeError(f"loader '{self.name}' has no option(s) {unknown}; known: {sorted(self.option_defaults)}")
        return {**self.option_defaults, **options}

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        raise NotImplementedError

    def subjects(self, root: Path, **options: Any) -> list[str]:
        raise NotImplementedError

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        raise NotImplementedError

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        raise NotImplementedError

    def paper_signals(self, rec: Recording, pair: tuple[str, ...], **options: Any) -> dict[str, Signal]:
        """The paper's whole-session preprocessing (offline only, for comparison with its tables)."""
        raise DataError(f"loader '{self.name}' has no 'paper' mode; use mode='live'")

    def __call__(self, root: str | Path, subjects: list[str] | None = None, skip_bad: bool = False,
                 **options: Any) -> Iterator[Recording]:
        """Yield the recordings of every subject (or of ``subjects``), one subject in memory at a time."""
        root = Path(root)
        ids = self.subjects(root, **options) if subjects is None else list(subjects)
        for subject in ids:
            try:
                recs = self.load(root, subject, **options)
            except (DataError, EdfError) as err:
                if not skip_bad:
                    raise
                log.warning("%s: skipping subject %s: %s", self.name, subject, err)
                continue
            yield from recs


def require_dir(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root}")
    return root


# ---------------------------------------------------------------- generic folder loader


def _read_config(root: Path, config: str | None) -> dict[str, Any]:
    import yaml

    path = Path(config) if config else root / CONFIG_NAME
    if not path.is_file():
        raise DataError(f"generic data set needs a YAML description at {path} (see docs/data.md)")
    cfg = yaml.safe_load(path.read_text()) or {}
    mods = cfg.get("modalities")
    if not isinstance(mods, dict) or not mods:
        raise DataError(f"{path}: 'modalities' must map modality names to channel lists")
    cfg["modalities"] = {m: (v if isinstance(v, dict) else {"channels": v}) for m, v in mods.items()}
    for m, v in cfg["modalities"].items():
        if not v.get("channels"):
            raise DataError(f"{path}: modality '{m}' names no channels")
    return cfg


def _read_csv(path: Path, names: list[str], delimiter: str) -> dict[str, np.ndarray]:
    with open(path) as f:
        header = [h.strip() for h in f.readline().strip().split(delimiter)]
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not in the header {header}")
    try:
        arr = np.loadtxt(path, delimiter=delimiter, skiprows=1, usecols=[header.index(n) for n in names], ndmin=2,
                         dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{path}: unreadable or truncated CSV ({err})") from None
    return {n: arr[:, i] for i, n in enumerate(names)}


def _file_channels(path: Path, names: list[str], cfg: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Samples and (where the file says) rates of ``names``."""
    suffix = path.suffix.lower()
    if suffix in (".edf", ".rec"):
        edf = EdfReader(path)
        return {n: edf.signal(n) for n in names}, {n: edf.fs_hz(n) for n in names}
    if suffix == ".csv":
        time_col = cfg.get("time_column")
        cols = _read_csv(path, names + ([time_col] if time_col else []), cfg.get("delimiter", ","))
        rates = {}
        if time_col:
            t = cols.pop(time_col)
            # whole-span rate: time stamps written with few decimals make single differences jitter
            rates = {n: (t.size - 1) / float(t[-1] - t[0]) for n in names} if t.size > 1 else {}
        return cols, rates
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "data" in z:
                chans = [str(c) for c in z["chan" if "chan" in z else "channels"]]
                fs = float(z["sf"] if "sf" in z else z["fs_hz"])
                miss = [n for n in names if n not in chans]
                if miss:
                    raise DataError(f"{path}: channel(s) {miss} not in {chans}")
                return {n: z["data"][chans.index(n)] for n in names}, {n: fs for n in names}
            miss = [n for n in names if n not in z]
            if miss:
                raise DataError(f"{path}: key(s) {miss} not in {sorted(z.files)}")
            rates = {n: float(z["fs_hz"]) for n in names} if "fs_hz" in z else {}
            return {n: np.asarray(z[n]).reshape(-1) for n in names}, rates
    raise DataError(f"{path}: unsupported file type '{suffix}' (EDF, CSV or NPZ)")


def _read_label_file(path: Path, spec: dict[str, Any]) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return np.asarray(z[spec.get("key", "label")]).reshape(-1).astype(np.int64)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).reshape(-1).astype(np.int64)
    if path.suffix == ".csv" and spec.get("column"):
        return _read_csv(path, [spec["column"]], spec.get("delimiter", ","))[spec["column"]].astype(np.int64)
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


class GenericLoader(SubjectLoader):
    """The user's own paired recordings: a folder of EDF/CSV/NPZ files plus ``edgebridge.yaml``."""

    name = "generic"
    option_defaults = {"config": None}

    def _files(self, root: Path, cfg: dict[str, Any]) -> list[Path]:
        pattern = cfg.get("files", "*")
        files = sorted(p for p in require_dir(root, "generic data").glob(pattern)
                       if p.is_file() and p.suffix.lower() in (".edf", ".rec", ".csv", ".npz"))
        if not files:
            raise DataError(f"{root}: no EDF/CSV/NPZ files match '{pattern}'")
        return files

    def _subject_of(self, path: Path, cfg: dict[str, Any]) -> str:
        m = re.search(cfg.get("subject", r"^(.*)$"), path.stem)
        if not m:
            raise DataError(f"{path.name}: file name does not match subject pattern {cfg.get('subject')!r}")
        return m.group(1) if m.groups() else m.group(0)

    def defaults(self, root: Path, **options: Any) -> DatasetDefaults:
        cfg = _read_config(root, self.options(options)["config"])
        mods = list(cfg["modalities"])
        new, old = cfg.get("pair", mods[:2])
        if "window_s" not in cfg:
            raise DataError(f"{root / CONFIG_NAME}: set window_s (and stride_s) for a generic data set")
        extra = {"fractions": cfg["splits"]} if cfg.get("splits") else {}
        return DatasetDefaults(new=new, old=old, window_s=float(cfg["window_s"]),
                               stride_s=float(cfg.get("stride_s", cfg["window_s"])),
                               min_label_fraction=float(cfg.get("min_label_fraction", 1.0)), **extra)

    def subjects(self, root: Path, **options: Any) -> list[str]:
        cfg = _read_config(root, self.options(options)["config"])
        return sorted({self._subject_of(p, cfg) for p in self._files(root, cfg)})

    def class_names(self, root: Path, **options: Any) -> tuple[str, ...]:
        cfg = _read_config(root, self.options(options)["config"])
        return tuple(cfg.get("labels", {}).get("class_names", ()))

    def load(self, root: Path, subject: str, **options: Any) -> list[Recording]:
        cfg = _read_config(root, self.options(options)["config"])
        files = [p for p in self._files(root, cfg) if self._subject_of(p, cfg) == subject]
        if not files:
            raise DataError(f"{root}: no file of subject '{subject}'")
        return [self._load_file(root, p, subject, cfg) for p in files]

    def _load_file(self, root: Path, path: Path, subject: str, cfg: dict[str, Any]) -> Recording:
        signals = {}
        for modality, mcfg in cfg["modalities"].items():
            names = [str(c) for c in mcfg["channels"]]
            data, file_rates = _file_channels(path, names, cfg)
            declared = mcfg.get("fs_hz", cfg.get("fs_hz"))
            rates = {n: file_rates.get(n, declared) for n in names}
            if any(r is None for r in rates.values()):
                raise DataError(f"{path.name}: no sample rate for '{modality}'; set fs_hz in {CONFIG_NAME}")
            if declared is not None and any(abs(r - float(declared)) > 0.01 * float(declared) for r in rates.values()):
                raise DataError(f"{path.name}: '{modality}' channels run at {rates} Hz, not the declared {declared} Hz")
            if len({round(r, 6) for r in rates.values()}) != 1 or len({d.size for d in data.values()}) != 1:
                raise DataError(f"{path.name}: channels of '{modality}' differ in rate or length: {rates}")
            fs = float(declared) if declared is not None else float(next(iter(rates.values())))
            signals[modality] = Signal(np.stack([data[n] for n in names]), fs, tuple(names))
        rec = Recording(subject=subject, signals=signals, meta={"file": path.name})
        ref_s = max(s.duration_s for s in signals.values())
        for m, s in signals.items():
            check_duration(s.data.shape[1], s.fs_hz, ref_s, f"{path.name}:{m}")
        if cfg.get("labels"):
            rec.labels = self._labels(root, path, cfg["labels"], rec.duration_s)
        return rec

    def _labels(self, root: Path, path: Path, spec: dict[str, Any], duration_s: float) -> Labels:
        codes = _read_label_file(root / spec["file"].format(stem=path.stem), spec)
        fs = float(spec.get("fs_hz", 1.0))
        covered_s = codes.size / fs
        if covered_s + 1.0 / fs < duration_s and not spec.get("allow_short", False):
            raise DataError(f"{path.name}: labels cover {covered_s:.1f} s but the signals last {duration_s:.1f} s; "
                            f"fix the label file or set labels.allow_short: true (the tail is then unlabelled)")
        codes = np.where(codes < 0, UNLABELLED, codes)
        return Labels(codes, fs, tuple(spec.get("class_names", [str(i) for i in range(int(codes.max()) + 1)])))


register_loader("generic")(GenericLoader())
