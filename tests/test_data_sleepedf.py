"""Sleep-EDF: own EDF+ writer → reader round trip, hypnogram annotations → per-second stages, nights per subject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import write_edf, write_sleepedf

from edgebridge.data.edf import EdfError, EdfReader
from edgebridge.data.prepare import prepare_dataset
from edgebridge.data.recordings import get_loader

NIGHTS = ["SC4001", "SC4002", "SC4011", "SC4021", "SC4031"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sleepedf(tmp_path_factory.mktemp("sleepedf"), NIGHTS, duration_s=300.0)


def test_edf_round_trip_and_annotations(tmp_path: Path) -> None:
    x = np.sin(np.arange(1000) / 7.0) * 123.4
    path = write_edf(tmp_path / "a.edf", [("EEG", x, 100.0, "uV"), ("slow", np.arange(10.0), 1.0, "")],
                     annotations=[(1.5, 2.0, "arousal"), (4.0, 0.0, "lights off")])
    edf = EdfReader(path)
    assert edf.labels == ["EEG", "slow"] and edf.fs_hz("EEG") == 100.0 and edf.duration_s == 10.0
    assert np.max(np.abs(edf.signal("EEG") - x)) <= np.ptp(x) / 65535 + 1e-4
    assert [(a.onset_s, a.duration_s, a.text) for a in edf.annotations()] == [(1.5, 2.0, "arousal"),
                                                                              (4.0, 0.0, "lights off")]
    raw = path.read_bytes()
    (tmp_path / "cut.edf").write_bytes(raw[:-100])
    with pytest.raises(EdfError, match="truncated"):
        EdfReader(tmp_path / "cut.edf")


def test_stages_and_nights(root: Path) -> None:
    loader = get_loader("sleepedf")
    assert loader.subjects(root) == ["SC400", "SC401", "SC402", "SC403"]
    recs = loader.load(root, "SC400")
    assert [r.meta["night"] for r in recs] == ["1", "2"]
    eeg = recs[0].signal("eeg")
    assert eeg.channels == ("EEG Fpz-Cz", "EEG Pz-Oz") and eeg.fs_hz == 100.0 and eeg.data.shape[1] == 30000
    # fixture epochs cycle W,1,2,3,4,R,?,MT; the last epoch is unscored
    np.testing.assert_array_equal(recs[0].labels.codes[::30], [0, 1, 2, 3, 3, 4, -1, -1, 0, -1])
    (emg_rec,) = loader.load(root, "SC401", modalities=("emg", "eeg"))
    assert emg_rec.signal("emg").fs_hz == 1.0


def test_missing_hypnogram_is_counted(root: Path, tmp_path: Path) -> None:
    import shutil

    for f in root.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "SC4031EC-Hypnogram.edf").unlink()
    out = prepare_dataset("sleepedf", tmp_path, tmp_path / "out", fractions={"train": 1, "pair": 1, "test": 1})
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_skipped"] == 1 and "SC4031" in m["skipped"][0]["reason"]
    assert m["dropped"]["unlabelled_windows"] == 4 * 3  # per night: ?, MT, unscored last epoch
    assert sum(c["windows"] for c in m["counts"].values()) == 4 * 7
