"""BrainFlow's STREAMING_BOARD (UDP multicast re-broadcast of a master board), isolated in a private network namespace.

The outer test re-runs this file under ``unshare -n`` with only ``lo`` up and a multicast route on it, so no packet
can leave the machine (stack_check.md §1.3); the inner test only runs there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

IN_NETNS = os.environ.get("EDGEBRIDGE_BF_NETNS") == "1"
GROUP, PORT = "225.1.1.1", 6677


def test_streaming_board_in_private_netns() -> None:
    if IN_NETNS:
        pytest.skip("already inside the namespace")
    pytest.importorskip("brainflow", reason="brainflow is not installed (pip install 'edgebridge[stream]')")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to isolate multicast")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.strip()}")
    cmd = (f"ip link set lo up && ip route add 224.0.0.0/4 dev lo && EDGEBRIDGE_BF_NETNS=1 "
           f"'{sys.executable}' -m pytest -q -p no:cacheprovider '{__file__}'")
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.skipif(not IN_NETNS, reason="runs inside a private netns (see test_streaming_board_in_private_netns)")
def test_source_reads_a_master_board_through_the_streaming_board() -> None:
    from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

    from edgebridge.devices.brainflow import BrainFlowSource

    master = BoardShim(BoardIds.SYNTHETIC_BOARD.value, BrainFlowInputParams())
    master.prepare_session()
    master.start_stream(45000, f"streaming_board://{GROUP}:{PORT}")
    try:
        src = BrainFlowSource("streaming", modality="ecg", ip_address=GROUP, ip_port=PORT, master_board="synthetic")
        chunks, deadline = [], time.monotonic() + 3.0
        with src:
            assert src.fs_hz == 250.0
            while time.monotonic() < deadline:
                chunk = src.read(0.1)
                if chunk is not None:
                    chunks.append(chunk)
    finally:
        master.stop_stream()
        master.release_session()
    data = np.concatenate([c.data for c in chunks], axis=1)
    assert data.shape[0] == len(src.channels) == 16  # the synthetic layout's EXG rows
    assert 500 <= data.shape[1] <= 800, f"{data.shape[1]} samples in ~3 s at 250 Hz"
    assert np.isfinite(data).all() and data.std() > 0
    counters = np.concatenate([np.arange(c.counter, c.counter + c.data.shape[1]) for c in chunks])
    assert np.all(np.diff(counters) >= 1), "sample counters must increase"
