"""LslSource and LslSink against loopback LSL streams, inside a private network namespace (no traffic leaves).

LSL discovery uses multicast, so the outer test re-runs this file under ``unshare -n`` with only ``lo`` up and a
multicast route on it; the inner tests only run there. Without permission to unshare, the outer test skips.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl", reason="pylsl is not installed (pip install 'edgebridge[stream]')")

from helpers import run_file_in_private_netns  # noqa: E402

from edgebridge.devices.base import SourceError, open_source  # noqa: E402
from edgebridge.devices.lsl import LslSource  # noqa: E402
from edgebridge.runtime.sinks import LslSink  # noqa: E402
from edgebridge.runtime.stream import Prediction  # noqa: E402

IN_NETNS = os.environ.get("EDGEBRIDGE_LSL_NETNS") == "1"
inner = pytest.mark.skipif(not IN_NETNS, reason="runs inside a private netns (see test_lsl_in_private_netns)")
N_INNER = 3


def test_lsl_in_private_netns() -> None:
    if IN_NETNS:
        pytest.skip("already inside the namespace")
    run_file_in_private_netns(__file__, "EDGEBRIDGE_LSL_NETNS", N_INNER)


def _outlet(name: str, n_ch: int, fs_hz: float) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(name, "ECG", n_ch, fs_hz, "float32", f"{name}-src")
    chans = info.desc().append_child("channels")
    for i in range(n_ch):
        chans.append_child("channel").append_child_value("label", f"lead{i}")
    return pylsl.StreamOutlet(info, chunk_size=10)


@inner
def test_lsl_source_receives_loopback_outlet() -> None:
    fs_hz, n = 1000.0, 1500
    outlet = _outlet("eb-ecg", 3, fs_hz)
    x = (np.arange(3 * n, dtype=np.float32).reshape(n, 3) * 0.5 - 7.0)  # (n, C) as LSL sends it
    src = open_source("lsl:eb-ecg", resolve_timeout_s=5.0)
    assert src.fs_hz == fs_hz and src.channels == ("lead0", "lead1", "lead2")

    def push() -> None:
        for a in range(0, n, 10):  # 10-sample chunks at 1 kHz
            outlet.push_chunk(x[a:a + 10])
            time.sleep(0.01)

    with src:
        writer = threading.Thread(target=push)
        writer.start()
        chunks, deadline = [], time.monotonic() + 10
        while sum(c.n_samples for c in chunks) < n and time.monotonic() < deadline:
            if (c := src.read(0.2)) is not None:
                chunks.append(c)
        writer.join()
    got = np.concatenate([c.data for c in chunks], axis=1)
    assert got.shape == (3, n) and np.array_equal(got, x.T)
    assert [c.counter for c in chunks] == list(np.cumsum([0] + [c.n_samples for c in chunks[:-1]]))


@inner
def test_lsl_sink_publishes_predictions() -> None:
    classes = ("rest", "stress")
    sink = LslSink("eb-preds", classes)
    found = pylsl.resolve_byprop("name", "eb-preds", 1, 5.0)
    assert found and found[0].channel_count() == 3
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=5.0)
    preds = [Prediction(1.0, 0, "stress", np.array([0.25, 0.75], np.float32), (), {}),
             Prediction(2.0, 250, None, None, ("flat",), {})]
    with sink:
        for p in preds:
            sink(p)
        rows = []
        deadline = time.monotonic() + 5
        while len(rows) < 2 and time.monotonic() < deadline:
            sample, _ = inlet.pull_sample(timeout=0.5)
            if sample is not None:
                rows.append(sample)
    assert rows[0] == [0.25, 0.75, 1.0]
    assert np.isnan(rows[1][:2]).all() and rows[1][2] == -1.0


@inner
def test_missing_stream_raises() -> None:
    with pytest.raises(SourceError, match="no LSL stream"):
        LslSource(name="eb-nobody-home", resolve_timeout_s=0.3)
