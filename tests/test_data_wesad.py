"""WESAD: Python-2 pickles read safely, labels mapped, rates checked, paired windows aligned, paper mode reproduced."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import PTT_S, py2_pickle_bytes, wesad_dict, write_wesad
from scipy import signal as sig

from edgebridge.data.generic import DataError
from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.prepared import open_shard
from edgebridge.data.recordings import get_loader
from edgebridge.data.wesad import load_pickle

SUBJECTS = ["S2", "S3", "S4", "S5", "S10"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wesad(tmp_path_factory.mktemp("wesad"), SUBJECTS, duration_s=200.0)


def test_fixture_is_a_python2_pickle_and_loader_reads_it_exactly(root: Path) -> None:
    raw = (root / "S2" / "S2.pkl").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct" in raw
    with pytest.raises(UnicodeDecodeError):  # 8-bit strings need encoding='latin1', as with the real files
        pickle.loads(raw)
    data = load_pickle(root / "S2" / "S2.pkl")
    ref = wesad_dict("S2", 200.0, seed=0)
    np.testing.assert_array_equal(data["signal"]["chest"]["ECG"], ref["signal"]["chest"]["ECG"])
    assert data["signal"]["chest"]["Temp"].dtype == np.float32 and data["label"].dtype == np.int32
    (rec,) = get_loader("wesad").load(root, "S2")
    assert rec.signal("ecg").fs_hz == 700.0 and rec.signal("ppg").fs_hz == 64.0
    np.testing.assert_array_equal(rec.signal("ppg").data[0], ref["signal"]["wrist"]["BVP"][:, 0].astype(np.float32))


def test_safe_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode()
    (tmp_path / "S2").mkdir()
    (tmp_path / "S2" / "S2.pkl").write_bytes(evil)
    with pytest.raises(DataError, match="refusing to load global posix.system"):
        load_pickle(tmp_path / "S2" / "S2.pkl")
    assert not marker.exists()


def test_label_codes_three_and_two_classes(root: Path) -> None:
    track = wesad_dict("S3", 200.0, seed=1)["label"]
    (rec,) = get_loader("wesad").load(root, "S3")
    for src, dst in {1: 0, 2: 1, 3: 2}.items():
        assert np.sum(rec.labels.codes == dst) == np.sum(track == src)
    assert np.sum(rec.labels.codes == -1) == np.sum(~np.isin(track, [1, 2, 3]))
    (rec2,) = get_loader("wesad").load(root, "S3", n_classes=2)
    assert rec2.labels.class_names == ("non-stress", "stress")
    assert np.sum(rec2.labels.codes == 1) == np.sum(track == 2)
    assert np.sum(rec2.labels.codes == 0) == np.sum(np.isin(track, [1, 3]))


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    d = wesad_dict("S2", 60.0, full=False)
    d["signal"]["wrist"]["BVP"] = d["signal"]["wrist"]["BVP"][::2]  # as if recorded at 32 Hz
    (tmp_path / "S2").mkdir()
    (tmp_path / "S2" / "S2.pkl").write_bytes(py2_pickle_bytes(d))
    with pytest.raises(DataError, match="another rate than 64.0 Hz"):
        get_loader("wesad").load(tmp_path, "S2")
    good = py2_pickle_bytes(wesad_dict("S2", 60.0, full=False))
    (tmp_path / "S2" / "S2.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="truncated"):
        get_loader("wesad").load(tmp_path, "S2")
    with pytest.raises(DataError, match="subject file not found"):
        get_loader("wesad").load(tmp_path, "S9")


def test_live_shards_are_aligned_and_labelled(root: Path, tmp_path: Path) -> None:
    out = prepare_dataset("wesad", root, tmp_path / "out", window_s=20, stride_s=10)
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["modalities"]["new"] == {"name": "ppg", "channels": ["BVP"], "fs_hz": 64.0}
    assert sorted(s for ids in m["splits"].values() for s in ids) == sorted(SUBJECTS)
    sh = next(s for s in m["shards"] if s["n_windows"])
    arr = open_shard(out / sh["path"])
    assert isinstance(arr["x_old"], np.memmap) and arr["x_old"].shape[1:] == (1, 14000)
    assert arr["x_new"].shape[1:] == (1, 1280)
    track = wesad_dict(sh["subject"], 200.0, seed=SUBJECTS.index(sh["subject"]))["label"]
    for i in range(arr["label"].shape[0]):
        a = int(arr["start_s"][i] * 700)
        seg = track[a:a + 14000]
        assert np.all(seg == seg[0]) and arr["label"][i] == {1: 0, 2: 1, 3: 2}[int(seg[0])]
        # the fixture's PPG peak follows each R peak by PTT_S: find it inside the paired window
        r = np.argmax(arr["x_old"][i, 0, :7000]) / 700.0
        p = np.argmax(arr["x_new"][i, 0, int((r + 0.1) * 64): int((r + 0.5) * 64)]) / 64.0 + int((r + 0.1) * 64) / 64
        assert abs(p - r - PTT_S) < 2.5 / 64


def test_paper_mode_matches_whole_session_preprocessing(root: Path, tmp_path: Path) -> None:
    out = prepare_dataset("wesad", root, tmp_path / "paper", mode="paper", window_s=20, stride_s=10)
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["modalities"]["new"]["fs_hz"] == 125.0 and m["modalities"]["old"]["fs_hz"] == 100.0
    sh = next(s for s in m["shards"] if s["n_windows"])
    arr = open_shard(out / sh["path"])
    bvp = wesad_dict(sh["subject"], 200.0, seed=SUBJECTS.index(sh["subject"]))["signal"]["wrist"]["BVP"][:, 0]
    y = sig.resample(bvp.astype(np.float32).astype(np.float64), 200 * 125)
    b, a = sig.cheby1(4, 0.5, [0.5, 12.0], btype="bandpass", fs=125.0)
    y = sig.filtfilt(b, a, y)
    y = (y - y.mean()) / y.std()
    k = int(arr["start_s"][0] * 125)
    np.testing.assert_allclose(arr["x_new"][0, 0], y[k:k + 2500], atol=1e-4)
