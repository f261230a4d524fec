"""PPG-DaLiA: same pickle format as WESAD; activity labels at 4 Hz; HR ground truth kept in meta."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_dalia

from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.recordings import get_loader


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dalia(tmp_path_factory.mktemp("dalia"), ["S1", "S2", "S3", "S4", "S11"], duration_s=160.0)


def test_activity_codes_and_signals(root: Path) -> None:
    loader = get_loader("dalia")
    assert loader.subjects(root) == ["S1", "S2", "S3", "S4", "S11"]
    (rec,) = loader.load(root, "S2")
    assert rec.signal("ecg").data.shape == (1, 160 * 700) and rec.signal("ppg").data.shape == (1, 160 * 64)
    codes = rec.labels.codes
    assert rec.labels.fs_hz == 4.0 and codes.size == 640
    seg = codes.reshape(8, 80)[:, 0]  # fixture: activity blocks 0,1,2,0,4,7,8,0
    np.testing.assert_array_equal(seg, [-1, 0, 1, -1, 3, 6, 7, -1])
    assert rec.meta["hr_bpm"].size == (160 - 8) // 2 + 1


def test_prepare_counts_match_activity_blocks(root: Path, tmp_path: Path) -> None:
    out = prepare_dataset("dalia", root, tmp_path / "out")
    m = json.loads((out / "manifest.json").read_text())
    # per subject: 8-s windows every 2 s fully inside one labelled 20-s block: 7 per block, 5 labelled blocks
    assert sum(c["windows"] for c in m["counts"].values()) == 5 * 5 * 7
    assert m["class_names"][0] == "sitting" and m["counts"]["train"]["classes"]["table_soccer"] == 0
