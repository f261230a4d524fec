"""prepare_dataset / PreparedWindows / inspect / plot: determinism, resume, NaN drops, PairedWindows parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_wesad

from edgebridge.data.generic import DataError
from edgebridge.data.prepare import inspect_prepared, prepare_dataset
from edgebridge.data.prepared import PreparedWindows, plot_prepared
from edgebridge.data.recordings import get_loader
from edgebridge.data.windows import PairedWindows, split_subjects
from edgebridge.spec import SignalSpec

SUBJECTS = ["S2", "S3", "S4", "S5", "S6", "S7"]
PPG = SignalSpec("ppg", 32.0, ("BVP",), 20.0, 10.0, bandpass_hz=(0.5, 8.0))
ECG = SignalSpec("ecg", 100.0, ("ECG",), 20.0, 10.0, bandpass_hz=(0.5, 40.0))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wesad(tmp_path_factory.mktemp("wesad"), SUBJECTS, duration_s=150.0, full=False)


@pytest.fixture(scope="module")
def out(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_dataset("wesad", root, tmp_path_factory.mktemp("p") / "out", window_s=20, stride_s=10, seed=3)


def test_splits_are_subject_wise_and_reproducible(root: Path, out: Path) -> None:
    m = json.loads((out / "manifest.json").read_text())
    expect = split_subjects(SUBJECTS, {"train": 5, "val": 2, "pair": 5, "test": 3}, seed=3)
    assert m["splits"] == {k: v for k, v in expect.items() if v}
    for sh in m["shards"]:
        assert sh["subject"] in m["splits"][sh["split"]]
    info = inspect_prepared(out)
    assert info["windows"] == {s: m["counts"][s]["windows"] for s in info["windows"]}
    assert info["subjects"]["train"] == m["splits"]["train"]


def test_prepared_windows_equal_paired_windows(root: Path, out: Path) -> None:
    """Same windows, same Preprocessor: shards read back equal the in-memory PairedWindows bit for bit."""
    pw = PreparedWindows(out, "train", PPG, ECG)
    subjects = sorted(set(pw.subjects))
    recs = [r for s in subjects for r in get_loader("wesad").load(root, s)]
    ref = PairedWindows(recs, PPG, ECG, labelled_only=True)
    assert len(pw) == len(ref) > 0
    np.testing.assert_array_equal(pw.labels, ref.labels)
    np.testing.assert_array_equal(pw.subjects, ref.subjects)
    for i in range(0, len(pw), 3):
        a, b = pw.get(i), ref.get(i)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(pw.raw_new(i), ref.raw_new(i))
    xb_new, xb_old, yb = next(pw.batches(4))
    assert xb_new.shape == (4, 1, 640) and xb_old.shape == (4, 1, 2000) and yb.dtype == np.int64
    assert pw.fingerprint() == PreparedWindows(out, "train", PPG, ECG).fingerprint()
    assert pw.fingerprint() != PreparedWindows(out, "test", PPG, ECG).fingerprint()


def test_spec_mismatch_is_refused(out: Path) -> None:
    with pytest.raises(ValueError, match="cut at 20.0/10.0"):
        PreparedWindows(out, "train", PPG.replace(window_s=10.0), ECG.replace(window_s=10.0))
    with pytest.raises(ValueError, match="pairs new='ppg'"):
        PreparedWindows(out, "train", ECG, PPG)


def test_resume_skips_finished_subjects_and_redoes_missing(root: Path, tmp_path: Path) -> None:
    out = prepare_dataset("wesad", root, tmp_path / "o", window_s=20, stride_s=10)
    m = json.loads((out / "manifest.json").read_text())
    shard = out / m["shards"][0]["path"]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.npz")}
    shard.unlink()
    (out / "status" / f"{m['shards'][0]['subject']}.json").unlink()
    prepare_dataset("wesad", root, out, window_s=20, stride_s=10)
    after = {p: p.stat().st_mtime_ns for p in out.glob("*/*.npz")}
    assert shard in after
    assert all(after[p] == t for p, t in before.items() if p != shard)
    assert json.loads((out / "manifest.json").read_text())["counts"] == m["counts"]
    with pytest.raises(DataError, match="other settings"):
        prepare_dataset("wesad", root, out, window_s=30, stride_s=10)
    prepare_dataset("wesad", root, out, window_s=30, stride_s=10, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["window_s"] == 30


def test_nan_windows_and_missing_subject_are_counted(tmp_path: Path) -> None:
    from fixtures_data import py2_pickle_bytes, wesad_dict

    root = write_wesad(tmp_path / "w", SUBJECTS[:4], duration_s=150.0, full=False)
    d = wesad_dict("S3", 150.0, seed=1, full=False)
    d["signal"]["chest"]["ECG"][int(40.5 * 700), 0] = np.nan  # inside windows starting at 30 s and 40 s
    (root / "S3" / "S3.pkl").write_bytes(py2_pickle_bytes(d))
    (root / "S9").mkdir()  # a subject folder without its pickle
    out = prepare_dataset("wesad", root, tmp_path / "o", window_s=20, stride_s=10)
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_skipped"] == 1 and "S9.pkl" in m["skipped"][0]["reason"]
    assert m["dropped"]["nan_windows"] == 2
    assert all(np.isfinite(PreparedWindows(out, s, PPG, ECG).get(0)[1]).all()
               for s in ("train", "pair", "test") if len(PreparedWindows(out, s, PPG, ECG)))
    with pytest.raises(DataError, match="subject file not found"):
        prepare_dataset("wesad", root, tmp_path / "o2", window_s=20, stride_s=10, on_error="raise")


def test_plot_prepared(out: Path, tmp_path: Path) -> None:
    png = plot_prepared(out, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
