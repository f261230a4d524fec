"""BrainFlow's STREAMING_BOARD (UDP multicast re-broadcast of a master board), isolated in a private network namespace.

The outer test re-runs this file under ``unshare -n`` with only ``lo`` up and a multicast route on it, so no packet
can leave the machine (stack_check.md §1.3); the inner test only runs there.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from helpers import run_file_in_private_netns

IN_NETNS = os.environ.get("EDGEBRIDGE_BF_NETNS") == "1"
GROUP, PORT = "225.1.1.1", 6677


def test_streaming_board_in_private_netns() -> None:
    if IN_NETNS:
        pytest.skip("already inside the namespace")
    pytest.importorskip("brainflow", reason="brainflow is not installed (pip install 'edgebridge[stream]')")
    run_file_in_private_netns(__file__, "EDGEBRIDGE_BF_NETNS", 1)


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
