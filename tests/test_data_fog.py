"""FOG: headerless 500-Hz CSV, per-patient EMG columns, patient-wise split; leaky window split only on request."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_fog

from edgebridge.data.generic import DataError
from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.recordings import get_loader

MAPS = {"001": (27, 28, 31), "003": (28, 27, 31), "008/OFF_1": (27, 28, 31), "008/OFF_2": (27, 31, 28),
        "009": (28, 27, 30), "012": (28, 27, 31)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fog(tmp_path_factory.mktemp("fog"), MAPS, duration_s=9.0)


def test_emg_columns_follow_the_patient_table(root: Path) -> None:
    loader = get_loader("fog")
    assert loader.subjects(root) == ["001", "003", "008", "009", "012"]
    recs = loader.load(root, "008")
    assert [r.meta["file"] for r in recs] == ["FilteredData/008/OFF_1/task_1.txt", "FilteredData/008/OFF_2/task_1.txt"]
    for r in recs + loader.load(root, "009"):
        emg = r.signal("emg").data
        np.testing.assert_allclose(emg.mean(axis=1), [100, 200, 300], atol=0.5)  # EMG1/2/3 in map order
        assert r.signal("eeg").channels == ("F3", "C3", "O1", "F4", "C4", "O2") and r.signal("eeg").fs_hz == 500.0
    labels = recs[0].labels.codes
    assert labels.size == 4500 and labels[:1500].max() == 0 and labels[1500:3000].min() == 1


def test_truncated_row_is_an_error(tmp_path: Path) -> None:
    write_fog(tmp_path, {"002": (27, 28, 31)}, duration_s=1.0)
    f = tmp_path / "FilteredData" / "002" / "task_1.txt"
    f.write_text(f.read_text() + "1,2,3\n")
    with pytest.raises(DataError, match="truncated"):
        get_loader("fog").load(tmp_path, "002")


def test_subject_split_by_default_window_split_warns(root: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    out = prepare_dataset("fog", root, tmp_path / "subj")
    m = json.loads((out / "manifest.json").read_text())
    seen = [s for ids in m["splits"].values() for s in ids]
    assert sorted(seen) == sorted(set(seen)) == ["001", "003", "008", "009", "012"]
    # 3-s windows, 0.3-s hop, kept when ≥ 80 % of samples share a label
    starts = np.arange(0, 9.0 - 3.0 + 1e-9, 0.3)
    n_kept = 0
    for s in starts:
        lab = np.zeros(4500)
        lab[1500:3000] = 1
        seg = lab[int(round(s * 500)):int(round(s * 500)) + 1500]
        n_kept += max(seg.mean(), 1 - seg.mean()) >= 0.8
    assert sum(c["windows"] for c in m["counts"].values()) == n_kept * 6  # 6 task files
    with caplog.at_level(logging.WARNING):
        out = prepare_dataset("fog", root, tmp_path / "win", split_by="window")
    assert "LEAK" in caplog.text
    m = json.loads((out / "manifest.json").read_text())
    assert all(sh["subject"] == "008" for sh in m["shards"] if sh["subject"] == "008")
    assert len({sh["split"] for sh in m["shards"] if sh["subject"] == "003"}) > 1  # one patient in several splits
