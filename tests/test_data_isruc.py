"""ISRUC-S1: .mat epochs + scorer-1 labels minus the last 30, 2/5 classes, paper-mode ECG per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import isruc_stages, write_isruc

from edgebridge.data.generic import DataError
from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.prepared import open_shard
from edgebridge.data.recordings import get_loader
from edgebridge.data.wesad import paper_ecg


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_isruc(tmp_path_factory.mktemp("isruc"), [1, 2, 3, 4, 10], n_epochs=8)


def test_subjects_sorted_numerically_and_epochs_in_order(root: Path) -> None:
    loader = get_loader("isruc")
    assert loader.subjects(root) == ["1", "2", "3", "4", "10"]
    (rec,) = loader.load(root, "2", n_classes=5)
    eeg = rec.signal("eeg")
    assert eeg.channels == ("F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1") and eeg.fs_hz == 200.0
    np.testing.assert_array_equal(eeg.data[0, ::6000], np.arange(8))  # epoch e starts with the value e
    stages = isruc_stages(8 + 30, seed=2)[:-30]
    expect = np.array([{0: 0, 1: 1, 2: 2, 3: 3, 5: 4}[s] for s in stages])
    np.testing.assert_array_equal(rec.labels.codes[::30], expect)
    (rec2,) = loader.load(root, "2")
    np.testing.assert_array_equal(rec2.labels.codes[::30], (stages != 0).astype(int))


def test_label_file_of_wrong_length_and_missing_file(root: Path, tmp_path: Path) -> None:
    write_isruc(tmp_path, [7], n_epochs=4)
    lines = (tmp_path / "RawData" / "7" / "7_1.txt").read_text().splitlines()
    (tmp_path / "RawData" / "7" / "7_1.txt").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match="1 labels after dropping the last 30, but the .mat holds 4 epochs"):
        get_loader("isruc").load(tmp_path, "7")
    (tmp_path / "RawData" / "7" / "7_1.txt").unlink()
    with pytest.raises(DataError, match="label file not found"):
        get_loader("isruc").load(tmp_path, "7")


def test_prepare_epochs_and_paper_ecg(root: Path, tmp_path: Path) -> None:
    out = prepare_dataset("isruc", root, tmp_path / "live")
    m = json.loads((out / "manifest.json").read_text())
    assert sum(c["windows"] for c in m["counts"].values()) == 5 * 8
    assert m["modalities"]["old"]["channels"][0] == "F3_A2"
    out = prepare_dataset("isruc", root, tmp_path / "paper", mode="paper")
    m = json.loads((out / "manifest.json").read_text())
    sh = m["shards"][0]
    arr = open_shard(out / sh["path"])
    assert arr["x_new"].shape[1:] == (1, 3000) and arr["x_old"].shape[1:] == (6, 6000)
    (rec,) = get_loader("isruc").load(root, sh["subject"])
    np.testing.assert_allclose(arr["x_new"][2], paper_ecg(rec.signal("ecg").data[:, 12000:18000].astype(float), 200.0),
                               atol=1e-5)
