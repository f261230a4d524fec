"""Turn a downloaded data set into paired, windowed, subject-split shards: ``prepare_dataset`` and ``inspect_prepared``.

One subject is loaded at a time, its windows are planned (positions, labels, NaN checks) without copying samples,
then streamed chunk by chunk into one uncompressed ``.npz`` per subject per split, which
:class:`edgebridge.data.prepared.PreparedWindows` memory-maps back. Re-running skips subjects whose status file says
they were finished with the same settings. Splits come from sorted subject ids and a seed, never file-system order.

Modes: ``live`` stores RAW windows at native rates (preprocessed later, per window, by ``Preprocessor``);
``paper`` stores the paper's whole-session-preprocessed windows — offline only, for comparison with its tables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgebridge.data.edf import EdfError
from edgebridge.data.generic import DataError, SubjectLoader
from edgebridge.data.recordings import UNLABELLED, Labels, Recording, Signal, get_loader
from edgebridge.data.windows import SPLITS, split_subjects
from edgebridge.windowing import window_starts

log = logging.getLogger(__name__)
FORMAT = "edgebridge-prepared/1"
MODES = ("live", "paper")
CHUNK_WINDOWS = 64


def _samples(seconds: float, fs_hz: float, what: str) -> int:
    n = seconds * fs_hz
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise DataError(f"{what} of {seconds} s at {fs_hz} Hz is {n:.3f} samples, not a whole number; pick another")
    return int(round(n))


@dataclass
class WindowPlan:
    """Windows of one recording, before any sample is copied. Shapes: every array (K,)."""

    new: Signal
    old: Signal
    k: np.ndarray
    label: np.ndarray
    nan: np.ndarray
    covered: np.ndarray


def _label_windows(labels: Labels | None, start_s: np.ndarray, window_s: float, min_fraction: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Label of each window (the class holding ≥ ``min_fraction`` of its samples, else UNLABELLED) and coverage."""
    out = np.full(start_s.size, UNLABELLED, dtype=np.int64)
    if labels is None:
        return out, np.ones(start_s.size, bool)
    n_cls = len(labels.class_names)
    a = np.round(start_s * labels.fs_hz).astype(np.int64)
    b = np.round((start_s + window_s) * labels.fs_hz).astype(np.int64)
    covered = b <= labels.codes.size
    for i in np.flatnonzero(covered):
        counts = np.bincount(labels.codes[a[i]:b[i]] + 1, minlength=n_cls + 1)
        best = int(np.argmax(counts[1:]))
        if counts[1 + best] >= min_fraction * (b[i] - a[i]) - 1e-9:
            out[i] = best
    return out, covered


def _nan_windows(sig: Signal, starts: np.ndarray, window_n: int) -> np.ndarray:
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(sig.data).all(axis=0))])
    return bad[starts + window_n] - bad[starts] > 0


def plan_windows(new: Signal, old: Signal, labels: Labels | None, window_s: float, stride_s: float,
                 min_fraction: float) -> WindowPlan:
    """Windows k·stride_s cut from both signals at their own rates (pair k covers the same seconds in both)."""
    n = min(window_starts(s.data.shape[1], _samples(window_s, s.fs_hz, "window_s"),
                          _samples(stride_s, s.fs_hz, "stride_s")).size for s in (new, old))
    k = np.arange(n, dtype=np.int64)
    label, covered = _label_windows(labels, k * stride_s, window_s, min_fraction)
    nan = np.zeros(n, bool)
    for s in (new, old):
        nan |= _nan_windows(s, k * _samples(stride_s, s.fs_hz, "stride_s"), _samples(window_s, s.fs_hz, "window_s"))
    return WindowPlan(new, old, k, label, nan, covered)


def _split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    wanted = [s for s in SPLITS if fractions.get(s, 0) > 0]
    total = sum(fractions[s] for s in wanted)
    exact = {s: fractions[s] / total * n for s in wanted}
    counts = {s: int(exact[s]) for s in wanted}
    for s in sorted(wanted, key=lambda s: exact[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def _window_split(n: int, subject: str, fractions: dict[str, float], seed: int) -> np.ndarray:
    """The paper's window-level split (leaks overlapping neighbours between splits): split name per window."""
    salt = int(hashlib.sha256(subject.encode()).hexdigest()[:8], 16)
    order = np.random.default_rng([seed, salt]).permutation(n)
    out = np.empty(n, dtype=object)
    pos = 0
    for s, c in _split_counts(n, fractions).items():
        out[order[pos:pos + c]] = s
        pos += c
    return out


def _gather(sig: Signal, ks: np.ndarray, stride_s: float, window_s: float) -> np.ndarray:
    """Copy windows ``ks`` of a signal. Shapes: -> (len(ks), C, W)."""
    w = _samples(window_s, sig.fs_hz, "window_s")
    starts = ks * _samples(stride_s, sig.fs_hz, "stride_s")
    return sig.data[:, starts[:, None] + np.arange(w)].transpose(1, 0, 2)


def _write_npy_stream(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype,
                      chunks: Iterator[np.ndarray]) -> None:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    with zf.open(name, "w", force_zip64=nbytes > 2**30) as fp:
        np.lib.format.write_array_header_2_0(fp, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
        written = 0
        for c in chunks:
            buf = np.ascontiguousarray(c, dtype=dtype)
            fp.write(buf.tobytes())
            written += buf.nbytes
    if written != nbytes:
        raise RuntimeError(f"shard array {name}: wrote {written} bytes, expected {nbytes}")


def write_shard(path: Path, rows: list[tuple[WindowPlan, np.ndarray, int]], window_s: float, stride_s: float) -> int:
    """Stream the selected windows of several recordings into one uncompressed npz (atomic rename).

    Keys: ``x_new`` (K, C_new, W_new) and ``x_old`` (K, C_old, W_old) float32, ``label`` (K,) int64, ``start_s``
    (K,) float64 (window start in its recording), ``recording`` (K,) int64 (index into the status' recordings).
    """
    n = int(sum(sel.size for _, sel, _ in rows))
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in ("new", "old"):
            sig0 = getattr(rows[0][0], key)
            shape = (n, sig0.data.shape[0], _samples(window_s, sig0.fs_hz, "window_s"))
            chunks = (_gather(getattr(plan, key), plan.k[sel[i:i + CHUNK_WINDOWS]], stride_s, window_s)
                      for plan, sel, _ in rows for i in range(0, sel.size, CHUNK_WINDOWS))
            _write_npy_stream(zf, f"x_{key}.npy", shape, np.dtype(np.float32), chunks)
        small = {"label": np.concatenate([p.label[s] for p, s, _ in rows]),
                 "start_s": np.concatenate([p.k[s] * stride_s for p, s, _ in rows]).astype(np.float64),
                 "recording": np.concatenate([np.full(s.size, r, np.int64) for _, s, r in rows])}
        for key, arr in small.items():
            _write_npy_stream(zf, f"{key}.npy", arr.shape, arr.dtype, iter([arr]))
    os.replace(tmp, path)
    return n


def _atomic_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _recording_plans(loader: SubjectLoader, rec: Recording, st: dict[str, Any]) -> WindowPlan:
    sigs = (loader.paper_signals(rec, (st["new"], st["old"]), **st["loader_options"]) if st["mode"] == "paper"
            else {m: rec.signal(m) for m in (st["new"], st["old"])})
    return plan_windows(sigs[st["new"]], sigs[st["old"]], rec.labels, st["window_s"], st["stride_s"],
                        st["min_label_fraction"])


def prepare_subject(loader: SubjectLoader, root: Path, subject: str, split: str | None, st: dict[str, Any],
                    out: Path, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Load, plan and write one subject's shards; return its status (shards, counts, drops)."""
    recs = loader.load(root, subject, **st["loader_options"])
    drops = {"nan_windows": 0, "unlabelled_windows": 0, "label_not_covering": 0}
    plans, per_split = [], {}
    for r_i, rec in enumerate(recs):
        plan = _recording_plans(loader, rec, st)
        keep = ~plan.nan
        drops["nan_windows"] += int(plan.nan.sum())
        drops["label_not_covering"] += int((~plan.covered & keep).sum())
        if not st["keep_unlabelled"]:
            drops["unlabelled_windows"] += int((keep & (plan.label == UNLABELLED)).sum())
            keep &= plan.label != UNLABELLED
        idx = np.flatnonzero(keep)
        dest = (np.full(idx.size, split, dtype=object) if split is not None
                else _window_split(idx.size, f"{subject}/{r_i}", st["fractions"], st["seed"]))
        for s in SPLITS:
            per_split.setdefault(s, []).append((plan, idx[dest == s], r_i))
        plans.append(plan)
    shards = []
    for s, rows in per_split.items():
        rows = [r for r in rows if r[1].size]
        if not rows:
            continue
        rel = f"{s}/{subject}.npz"
        n = write_shard(out / rel, rows, st["window_s"], st["stride_s"])
        labels = np.concatenate([p.label[sel] for p, sel, _ in rows])
        shards.append({"split": s, "path": rel, "subject": subject, "n_windows": n,
                       "fs_new_hz": rows[0][0].new.fs_hz, "fs_old_hz": rows[0][0].old.fs_hz,
                       "channels_new": list(rows[0][0].new.channels), "channels_old": list(rows[0][0].old.channels),
                       "class_counts": _class_counts(labels, class_names)})
    return {"subject": subject, "shards": shards, "dropped": drops,
            "recordings": [r.meta.get("file", str(i)) for i, r in enumerate(recs)]}


def _class_counts(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    out = {name: int((labels == i).sum()) for i, name in enumerate(class_names)}
    if (labels == UNLABELLED).any():
        out["unlabelled"] = int((labels == UNLABELLED).sum())
    return out


def _settings(loader: SubjectLoader, root: Path, mode: str, options: dict[str, Any]) -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'; known: {list(MODES)}")
    split_by = options.pop("split_by", "subject")
    if split_by not in ("subject", "window"):
        raise ValueError(f"split_by must be 'subject' or 'window', got '{split_by}'")
    picked = {k: options.pop(k) for k in ("new", "old", "window_s", "stride_s", "fractions", "min_label_fraction")
              if options.get(k) is not None}
    options = {k: v for k, v in options.items() if v is not None}
    seed, keep_unlabelled = int(options.pop("seed", 0)), bool(options.pop("keep_unlabelled", False))
    loader_options = loader.options(options)
    d = loader.defaults(root, **loader_options)
    st = {"dataset": loader.name, "mode": mode, "new": d.new, "old": d.old, "window_s": d.window_s,
          "stride_s": d.stride_s, "min_label_fraction": d.min_label_fraction, "fractions": dict(d.fractions),
          "seed": seed, "split_by": split_by, "keep_unlabelled": keep_unlabelled,
          "loader_options": {k: list(v) if isinstance(v, tuple) else v for k, v in loader_options.items()}}
    st.update(picked)
    st["window_s"], st["stride_s"] = float(st["window_s"]), float(st["stride_s"])
    if st["new"] == st["old"]:
        raise ValueError(f"new and old modality are both '{st['new']}'")
    mods = st["loader_options"].get("modalities")
    if mods is not None and not {st["new"], st["old"]} <= set(mods):
        st["loader_options"]["modalities"] = sorted({*mods, st["new"], st["old"]})
    return st


def _settings_hash(st: dict[str, Any]) -> str:
    from edgebridge import __version__

    return hashlib.sha256(json.dumps([st, __version__, FORMAT], sort_keys=True).encode()).hexdigest()[:16]


def _claim_out(out: Path, st: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix two preparations in one folder; with ``overwrite`` remove only files this module wrote."""
    path = out / "settings.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("hash") != _settings_hash(st):
            if not overwrite:
                raise DataError(f"{out} holds a preparation with other settings ({old.get('settings')}); "
                                f"use another folder or overwrite=True")
            for f in [out / "manifest.json", *out.glob("status/*.json"), *(p for s in SPLITS
                                                                          for p in out.glob(f"{s}/*.npz"))]:
                f.unlink()
    _atomic_json(path, {"hash": _settings_hash(st), "settings": st})


def _progress(items: list[str], desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="subject", disable=not log.isEnabledFor(logging.INFO))


def prepare_dataset(name: str, root: str | os.PathLike, out: str | os.PathLike, mode: str = "live", *,
                    overwrite: bool = False, on_error: str = "skip", **options: Any) -> Path:
    """Prepare data set ``name`` at ``root`` into shards under ``out``; resumable; returns ``out``.

    Args:
        name: a registered loader (``wesad``, ``dalia``, ``isruc``, ``fog``, ``sleepedf``, ``generic``).
        mode: ``live`` (raw windows at native rates) or ``paper`` (the paper's offline preprocessing).
        overwrite: replace a preparation with other settings in ``out``.
        on_error: ``skip`` (log, count in the manifest) or ``raise`` for a subject whose files are bad.
        **options: ``new``, ``old``, ``window_s``, ``stride_s``, ``seed``, ``fractions``, ``split_by``
            (``subject`` or the paper's leaky ``window``), ``min_label_fraction``, ``keep_unlabelled``, and the
            loader's own options (e.g. ``n_classes``).
    """
    loader = get_loader(name)
    root, out = Path(root), Path(out)
    st = _settings(loader, root, mode, dict(options))
    subjects = loader.subjects(root, **st["loader_options"])
    class_names = loader.class_names(root, **st["loader_options"])
    if st["split_by"] == "window":
        log.warning("split_by='window' reproduces the paper's window-level split: overlapping windows of one subject "
                    "land in different splits, so train/pair/test LEAK into each other. Use it only to compare with "
                    "the paper's numbers.")
        assignment = {s: None for s in subjects}
        splits = {s: list(subjects) for s in SPLITS if st["fractions"].get(s, 0) > 0}
    else:
        splits = split_subjects(subjects, st["fractions"], st["seed"])
        assignment = {subj: s for s, ids in splits.items() for subj in ids}
    _claim_out(out, st, overwrite)
    h, statuses, skipped = _settings_hash(st), [], []
    for subject in _progress(subjects, f"prepare {name}"):
        status_path = out / "status" / f"{subject}.json"
        if status_path.is_file() and json.loads(status_path.read_text()).get("hash") == h:
            statuses.append(json.loads(status_path.read_text()))
            log.info("%s: subject %s already prepared, skipping", name, subject)
            continue
        try:
            status = prepare_subject(loader, root, subject, assignment[subject], st, out, class_names)
        except (DataError, EdfError) as err:
            if on_error == "raise":
                raise
            log.warning("%s: skipping subject %s: %s", name, subject, err)
            skipped.append({"subject": subject, "reason": str(err)})
            continue
        status["hash"] = h
        _atomic_json(status_path, status)
        statuses.append(status)
        log.info("%s: subject %s → %s", name, subject, {s["split"]: s["n_windows"] for s in status["shards"]})
    _atomic_json(out / "manifest.json", _manifest(st, splits, class_names, statuses, skipped))
    log.info("prepared %s (%s mode) → %s; next: edgebridge data inspect %s", name, mode, out, out)
    return out


def _manifest(st: dict[str, Any], splits: dict[str, list[str]], class_names: tuple[str, ...],
              statuses: list[dict[str, Any]], skipped: list[dict[str, str]]) -> dict[str, Any]:
    from edgebridge import __version__

    shards = [sh for s in statuses for sh in s["shards"]]
    dropped = {k: sum(s["dropped"][k] for s in statuses) for k in ("nan_windows", "unlabelled_windows",
                                                                    "label_not_covering")}
    counts = {}
    for split in SPLITS:
        mine = [sh for sh in shards if sh["split"] == split]
        cls: dict[str, int] = {}
        for sh in mine:
            for k, v in sh["class_counts"].items():
                cls[k] = cls.get(k, 0) + v
        counts[split] = {"windows": sum(sh["n_windows"] for sh in mine), "classes": cls}

    def modality(key: str) -> dict[str, Any]:
        rates = sorted({sh[f"fs_{key}_hz"] for sh in shards})
        return {"name": st[key], "channels": shards[0][f"channels_{key}"] if shards else [],
                "fs_hz": rates[0] if len(rates) == 1 else rates}

    return {"format": FORMAT, "dataset": st["dataset"], "mode": st["mode"], "settings": st,
            "modalities": {"new": modality("new"), "old": modality("old")},
            "window_s": st["window_s"], "stride_s": st["stride_s"], "class_names": list(class_names),
            "splits": {s: ids for s, ids in splits.items() if ids}, "counts": counts, "shards": shards,
            "skipped": skipped, "n_skipped": len(skipped), "dropped": dropped, "code_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def inspect_prepared(out: str | os.PathLike) -> dict[str, Any]:
    """Summary of a prepared folder — subjects and windows per split, class counts — recounted from the shards."""
    from edgebridge.data.prepared import open_shard, read_manifest

    m = read_manifest(out)
    names = tuple(m["class_names"])
    windows, classes, subjects = {}, {}, {}
    for split in SPLITS:
        mine = [sh for sh in m["shards"] if sh["split"] == split]
        labels = [np.asarray(open_shard(Path(out) / sh["path"])["label"]) for sh in mine]
        lab = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        windows[split], classes[split] = int(lab.size), _class_counts(lab, names)
        subjects[split] = sorted({sh["subject"] for sh in mine})
    if {s: windows[s] for s in SPLITS} != {s: m["counts"][s]["windows"] for s in SPLITS}:
        raise DataError(f"{out}: shards hold {windows} windows but the manifest says "
                        f"{ {s: m['counts'][s]['windows'] for s in SPLITS} } — re-run prepare")
    return {"dataset": m["dataset"], "mode": m["mode"], "modalities": m["modalities"], "window_s": m["window_s"],
            "stride_s": m["stride_s"], "class_names": list(names), "subjects": subjects, "windows": windows,
            "class_counts": classes, "skipped": m["skipped"], "dropped": m["dropped"]}
