"""BrainFlowSource: any board BrainFlow supports (OpenBCI, Muse, EmotiBit, Shimmer, …) as a Chunk source.

Rows are chosen by modality through BrainFlow's own board descriptions (``get_ecg_channels`` …), in the preset that
carries them (PPG on Muse and EmotiBit lives in the ancillary/auxiliary presets). Timestamps come from the board's
package counter (unwrapped, divided by the rate), not from BrainFlow's arrival-time row, which jitters by ±1.5 ms.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgebridge.devices.base import Chunk, ChunkAssembler, SourceError, SourceStats, missing_extra, register_source
from edgebridge.devices.frames import CounterUnwrapper

log = logging.getLogger(__name__)

PACKAGE_COUNTER_MODULUS = 256  # BrainFlow boards count packages in one byte


def _brainflow() -> Any:
    try:
        from brainflow import board_shim
    except ImportError as e:
        raise missing_extra("brainflow") from e
    return board_shim


def _row_getters(bs: Any) -> dict[str, Callable[[int, int], list[int]]]:
    """Modality name -> BrainFlow descriptor function ``(board_id, preset) -> rows``."""
    s = bs.BoardShim
    return {"ecg": s.get_ecg_channels, "ppg": s.get_ppg_channels, "emg": s.get_emg_channels,
            "eeg": s.get_eeg_channels, "eog": s.get_eog_channels, "exg": s.get_exg_channels,
            "eda": s.get_eda_channels, "accel": s.get_accel_channels, "gyro": s.get_gyro_channels,
            "temperature": s.get_temperature_channels}


def resolve_board(board: str | int) -> int:
    """Board id from an id, ``"-1"``, ``"synthetic"``, ``"SYNTHETIC_BOARD"`` or ``"cyton_daisy"``."""
    bs = _brainflow()
    if isinstance(board, int) or (isinstance(board, str) and board.lstrip("-").isdigit()):
        return int(board)
    names = {m.name: m.value for m in bs.BoardIds}
    key = str(board).upper().replace("-", "_")
    for cand in (key, f"{key}_BOARD"):
        if cand in names:
            return names[cand]
    close = difflib.get_close_matches(key, names, n=3)
    raise KeyError(f"unknown BrainFlow board '{board}'; did you mean {close}? known: {sorted(names)}")


def resolve_preset(preset: str | int) -> int:
    """``"default"``/``"auxiliary"``/``"ancillary"`` (or the BrainFlowPresets value) -> preset value."""
    bs = _brainflow()
    if isinstance(preset, int):
        return preset
    names = {m.name: m.value for m in bs.BrainFlowPresets}
    key = f"{preset.upper()}_PRESET" if not preset.upper().endswith("_PRESET") else preset.upper()
    if key not in names:
        raise KeyError(f"unknown BrainFlow preset '{preset}'; known: {sorted(names)}")
    return names[key]


class BrainFlowSource:
    """Samples of one modality from a BrainFlow board.

    Args:
        board: board name or id (``"synthetic"``, ``"cyton"``, ``"muse_2"``, ``-3`` for playback).
        modality: which rows to read: ecg, ppg, emg, eeg, eog, exg, eda, accel, gyro, temperature.
        preset: BrainFlow preset holding those rows (``"default"``, ``"auxiliary"``, ``"ancillary"``).
        rows: indices into the modality's rows to keep (e.g. ``[0]`` for the first ECG lead); default all.
        fs_hz: override the board's nominal rate (needed for a playback file recorded at another rate).
        serial_port, mac_address, ip_address, ip_port, file, master_board, serial_number, other_info, timeout:
            BrainFlowInputParams fields (``master_board`` by name or id, for playback/streaming boards).
        config: ``config_board`` strings sent after ``prepare_session`` (e.g. ``"loopback_true"`` for playback).
        buffer_size: BrainFlow's ring buffer in samples.
        poll_s: sleep between polls of the board buffer.
    """

    def __init__(self, board: str | int = "synthetic", modality: str = "ecg", preset: str | int = "default",
                 rows: Sequence[int] | None = None, fs_hz: float | None = None, *, serial_port: str = "",
                 mac_address: str = "", ip_address: str = "", ip_port: int = 0, file: str = "",
                 master_board: str | int | None = None, serial_number: str = "", other_info: str = "",
                 timeout: int = 0, config: Sequence[str] = (), buffer_size: int = 450_000,
                 poll_s: float = 0.005) -> None:
        bs = _brainflow()
        self._bs = bs
        self.board_id = resolve_board(board)
        self.preset = resolve_preset(preset)
        params = bs.BrainFlowInputParams()
        params.serial_port, params.mac_address, params.ip_address = serial_port, mac_address, ip_address
        params.ip_port, params.file, params.serial_number = int(ip_port), str(file), serial_number
        params.other_info, params.timeout = other_info, int(timeout)
        layout_id = self.board_id
        if master_board is not None:
            params.master_board = layout_id = resolve_board(master_board)
        self._params, self.config, self.buffer_size, self.poll_s = params, tuple(config), buffer_size, poll_s
        getters = _row_getters(bs)
        if modality not in getters:
            raise KeyError(f"unknown modality '{modality}' for BrainFlow; known: {sorted(getters)}")
        try:
            all_rows = list(getters[modality](layout_id, self.preset))
        except bs.BrainFlowError as e:
            raise SourceError(f"board {layout_id} has no {modality} rows in preset {preset}: {e}") from e
        if not all_rows:
            raise SourceError(f"board {layout_id} lists no {modality} rows in preset {preset}; PPG on Muse/EmotiBit "
                              f"lives in the 'ancillary'/'auxiliary' presets")
        pick = list(range(len(all_rows))) if rows is None else list(rows)
        self.rows = [all_rows[i] for i in pick]
        self.modality = modality
        self.channels = tuple(f"{modality}{i}" for i in pick)
        self.fs_hz = float(fs_hz if fs_hz is not None else bs.BoardShim.get_sampling_rate(layout_id, self.preset))
        self._counter_row = bs.BoardShim.get_package_num_channel(layout_id, self.preset)
        self.stats = SourceStats()
        self.finished = False
        self._board: Any = None
        self._unwrap = CounterUnwrapper(PACKAGE_COUNTER_MODULUS)
        self._assembler = ChunkAssembler(self.fs_hz, self.channels, self.stats)

    def __enter__(self) -> BrainFlowSource:
        board = self._bs.BoardShim(self.board_id, self._params)
        board.prepare_session()
        try:
            for cmd in self.config:
                board.config_board(cmd)
            board.start_stream(self.buffer_size)
        except self._bs.BrainFlowError:
            board.release_session()
            raise
        self._board = board
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop streaming and release the board (idempotent)."""
        board, self._board = self._board, None
        if board is None:
            return
        try:
            board.stop_stream()
        except self._bs.BrainFlowError as e:
            log.warning("stop_stream failed: %s", e)
        finally:
            board.release_session()

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        """Samples that arrived since the last call (one gap-free run); None if none within ``timeout_s``."""
        if self._assembler:
            return self._assembler.pop()
        if self._board is None:
            raise SourceError("BrainFlowSource.read() outside 'with source:'")
        deadline = time.monotonic() + timeout_s
        while True:
            n = self._board.get_board_data_count(self.preset)
            if n > 0:
                data = self._board.get_board_data(n, self.preset)
                counters = self._unwrap(data[self._counter_row].astype(np.int64))
                self.stats.resets = self._unwrap.resets
                self._assembler.add(counters, data[self.rows])
                return self._assembler.pop()
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))


@register_source("brainflow")
def _open_brainflow(rest: str, **options: Any) -> BrainFlowSource:
    """``brainflow:<board>`` e.g. ``brainflow:synthetic``, ``brainflow:cyton`` with ``serial_port=…``."""
    return BrainFlowSource(rest or "synthetic", **options)
