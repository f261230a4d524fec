"""Stream application: a real exported ONNX bundle streamed from a file equals the offline path window by window;
SIGINT/SIGTERM flush the sinks; reconnects, channel picking, mismatch errors, status line."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import tty

import numpy as np
import pytest
from fixtures_export import check_windows, make_chain

from edgebridge.devices.base import Chunk, SourceError, SourceStats
from edgebridge.export.api import export_bundle
from edgebridge.export.bundle import load_bundle
from edgebridge.runtime import app
from edgebridge.runtime.app import ReconnectingSource, run_stream, split_source_uri, stream
from edgebridge.runtime.status import StatusLine, StatusSnapshot, format_status
from edgebridge.spec import SpecError
from edgebridge.windowing import cut_windows

FS_HZ = 100.0  # the recording's rate; the bundle's model runs at 50 Hz, so every window is resampled


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny random chain whose head is sharpened and centred so its label changes along a recording."""
    import torch

    from edgebridge.preprocess import Preprocessor

    model, config = make_chain("tiny_cnn", "tiny_transformer", seed=3)
    x = Preprocessor(config.spec_new, FS_HZ).batch(cut_windows(_recording(90), 400, 200))
    with torch.no_grad():
        model.head.fc.weight.mul_(50.0)
        model.head.fc.bias.sub_(model(torch.from_numpy(x)).mean(0))
    out = tmp_path_factory.mktemp("app") / "bundle"
    return export_bundle(model, config, out, check_windows(model), precisions=("fp32",),
                         exporter="torchscript")  # the quicker exporter: this file tests streaming, not export


def _recording(seconds: float, seed: int = 0) -> np.ndarray:
    """Pulse-like signal whose rate drifts (so the labels change along it). Shapes: -> (1, T)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS_HZ)) / FS_HZ
    rate_hz = 1.4 + 0.7 * np.sin(2 * np.pi * t / 37.0)
    phase = 2 * np.pi * np.cumsum(rate_hz) / FS_HZ
    x = np.sin(phase) + 0.5 * np.sin(2 * phase + 0.3) + 0.25 * rng.standard_normal(t.size)
    return (30 + 8 * x[None]).astype(np.float32)


def _save(path, data: np.ndarray, channels: tuple[str, ...], fs_hz: float = FS_HZ):
    np.savez(path, data=data, fs_hz=fs_hz, channels=np.array(channels))
    return path


def _offline(bundle_path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The offline path: cut_windows of the whole recording -> LoadedBundle.predict -> softmax."""
    lb = load_bundle(bundle_path)
    w_n, s_n = lb.spec.window_samples(FS_HZ), lb.spec.stride_samples(FS_HZ)
    wins = cut_windows(x, w_n, s_n)
    logits = lb.predict(wins, fs_hz=FS_HZ).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return np.arange(len(wins)) * s_n, probs, lb.labels(logits)


def test_file_replay_through_run_stream_equals_offline(bundle, tmp_path) -> None:
    x = _recording(90)
    src = _save(tmp_path / "rec.npz", x, ("ppg",))
    got = []
    stats = run_stream(bundle, f"file:{src}?chunk_samples=37", sinks=[got.append, f"jsonl:{tmp_path / 'p.jsonl'}"],
                       status=False)
    starts, probs, labels = _offline(bundle, x)
    w_n = 400
    assert len(got) == len(starts) == stats["windows"] == stats["scored"] == stats["emitted"] == 44
    assert stats["drops"] == 0 and stats["flagged"] == 0 and stats["reason"] == "finished"
    for k, p in enumerate(got):
        assert p.start_index == starts[k] and p.flags == ()
        assert p.t_end_s == pytest.approx((starts[k] + w_n) / FS_HZ)
        np.testing.assert_allclose(p.probs, probs[k], atol=1e-5, rtol=1e-4)
        assert p.label == labels[k]
    assert len(set(labels)) > 1  # not one class throughout, so label equality means something
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(s)["label"] for s in lines] == labels
    assert stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"] > 0 and stats["samples"] == x.shape[1]


def test_stream_iterator_picks_a_channel_and_equals_offline(bundle, tmp_path) -> None:
    x = _recording(40, seed=5)
    noise = np.random.default_rng(9).standard_normal((2, x.shape[1])).astype(np.float32)
    src = _save(tmp_path / "rec3.npz", np.concatenate([noise[:1], x, noise[1:]]), ("acc", "ppg_green", "ppg_red"))
    preds = list(stream(bundle, f"file:{src}?chunk_samples=5,300", channels="ppg_green", max_windows=9))
    starts, probs, labels = _offline(bundle, x)
    assert len(preds) == 9
    for k, p in enumerate(preds):
        assert p.start_index == starts[k] and p.label == labels[k]
        np.testing.assert_allclose(p.probs, probs[k], atol=1e-5, rtol=1e-4)
    with pytest.raises(SpecError, match="no channel 'ppg_blue'"):
        stream(bundle, f"file:{src}", channels="ppg_blue")


def test_mismatch_raises_before_anything_is_written(bundle, tmp_path) -> None:
    x = _recording(10)
    two = _save(tmp_path / "two.npz", np.concatenate([x, x]), ("a", "b"))
    out = tmp_path / "never.jsonl"
    with pytest.raises(SpecError, match="--channels"):
        run_stream(bundle, f"file:{two}", sinks=[f"jsonl:{out}"], status=False)
    odd = _save(tmp_path / "odd.npz", x, ("ppg",), fs_hz=100.3)  # a 4 s window is 401.2 samples
    with pytest.raises(SpecError, match="not a whole number"):
        run_stream(bundle, f"file:{odd}", sinks=[f"jsonl:{out}"], status=False)
    assert not out.exists()


def test_split_source_uri() -> None:
    assert split_source_uri("brainflow:synthetic") == ("brainflow:synthetic", {})
    base, opts = split_source_uri("serial:/dev/ttyACM0?fs_hz=250&parser=int16_le&checksum=sum8&realtime=true&x=0.5")
    assert base == "serial:/dev/ttyACM0"
    assert opts == {"fs_hz": 250, "parser": "int16_le", "checksum": "sum8", "realtime": True, "x": 0.5}
    assert split_source_uri("file:rec.npz?chunk_samples=1,30")[1] == {"chunk_samples": [1, 30]}
    with pytest.raises(SourceError):
        split_source_uri("file:a.npz?x=1&&=2")


class FlakySource:
    """100 Hz samples from an array, 10 per read; the ``fail_at``-th read raises (a cable pulled)."""

    def __init__(self, x: np.ndarray, fail_at: int | None, start: int = 0, pace_s: float = 0.0) -> None:
        self.x, self.fail_at, self.pos, self.pace_s = x, fail_at, start, pace_s
        self.fs_hz, self.channels, self.finished, self.stats = FS_HZ, ("ppg",), False, SourceStats()
        self.reads = self.counter = 0

    def __enter__(self) -> FlakySource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, timeout_s: float = 0.1) -> Chunk | None:
        self.reads += 1
        if self.reads == self.fail_at:
            raise SourceError("device disconnected")
        if self.pos >= self.x.shape[1]:
            self.finished = True
            return None
        time.sleep(self.pace_s)
        c = Chunk.from_counter(self.x[:, self.pos:self.pos + 10], FS_HZ, self.channels, self.counter)
        self.pos, self.counter = self.pos + 10, self.counter + 10
        self.stats.samples += 10
        return c


def test_reconnect_turns_the_outage_into_a_counter_gap(monkeypatch) -> None:
    x = _recording(5)
    now = [100.0]
    monkeypatch.setattr(app.time, "monotonic", lambda: now[0])
    made = []

    def factory() -> FlakySource:
        made.append(FlakySource(x, fail_at=4 if not made else None, start=30 if made else 0))
        return made[-1]

    src = ReconnectingSource(factory, stall_s=5.0)
    with src:
        chunks = [src.read(), src.read(), src.read()]
        now[0] += 1.0  # one second without samples, then the read fails
        assert src.read() is None and src.reconnects == 1 and len(made) == 2
        now[0] += 0.5
        after = src.read()
    assert [c.counter for c in chunks] == [0, 10, 20]
    # last data at t=100, first new chunk at t=101.5: 150 samples of wall time, 10 of them in the new chunk
    assert after.counter == 30 + 150 - 10 and src.stats.reconnects == 1
    np.testing.assert_array_equal(after.data, x[:, 30:40])
    with ReconnectingSource(lambda: FlakySource(x, None), stall_s=2.0) as quiet:  # silence also reconnects
        real = quiet._src
        real.read = lambda timeout_s=0.1: None
        now[0] += 3.0
        assert quiet.read() is None and quiet.reconnects == 1 and quiet._src is not real


def test_run_stream_survives_a_disconnect(bundle) -> None:
    x = _recording(16)
    made = []

    def factory() -> FlakySource:  # 10x real time; the second device resumes where the signal left off
        made.append(FlakySource(x, fail_at=60 if not made else None, start=590 if made else 0, pace_s=0.01))
        return made[-1]

    got = []
    stats = run_stream(bundle, factory, sinks=[got.append], status=False)
    assert stats["reconnects"] == 1 and len(made) == 2 and stats["reason"] == "finished"
    assert stats["samples"] == x.shape[1] and stats["emitted"] == len(got) >= 5
    assert got[-1].start_index > 590 and got[-1].scored


def _frames(x: np.ndarray, scale: float) -> bytes:
    """The binary protocol ``a5 5a | u16 counter | int16 value | xor | c0`` for each sample of a 1-channel signal."""
    out = bytearray()
    for i, v in enumerate(np.round(x[0] / scale).astype(np.int16)):
        body = struct.pack("<Hh", i % 65536, int(v))
        xor = 0
        for b in body:
            xor ^= b
        out += b"\xa5\x5a" + body + bytes([xor]) + b"\xc0"
    return bytes(out)


def test_serial_binary_protocol_through_a_pty(bundle) -> None:
    """A board emulated on a pty: URI settings (rate, parser, hex sync/end, scale) reach the parser; predictions
    equal the offline path on the same (quantised) samples."""
    scale = 0.01
    x = np.round(_recording(12, seed=2) / scale) * scale  # what the board's int16 frames can carry
    master, slave = os.openpty()
    tty.setraw(slave)
    data, stop = _frames(x, scale), threading.Event()

    def board() -> None:  # 10x real time, in 100-sample bursts; waits until the reader has opened the port
        time.sleep(0.5)
        for a in range(0, len(data), 700):
            if stop.is_set():
                return
            os.write(master, data[a:a + 700])
            time.sleep(0.1)

    writer = threading.Thread(target=board, daemon=True)
    writer.start()
    uri = (f"serial:{os.ttyname(slave)}?fs_hz=100&parser=int16_le&sync=a55a&end=c0&checksum=xor&scale={scale}"
           f"&counter_bytes=2")
    try:
        got = list(stream(bundle, uri, max_windows=3))
    finally:
        stop.set()
        writer.join(5)
        os.close(master)
        os.close(slave)
    starts, probs, labels = _offline(bundle, x)
    assert len(got) == 3
    for k, p in enumerate(got):
        assert p.start_index == starts[k] and p.label == labels[k] and p.flags == ()
        np.testing.assert_allclose(p.probs, probs[k], atol=1e-4)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_exits_zero_and_flushes_the_jsonl(bundle, tmp_path, sig) -> None:
    """The stream runs in a subprocess with torch blocked, on an endless unthrottled replay, until signalled."""
    src = _save(tmp_path / "loop.npz", _recording(20), ("ppg",))
    out = tmp_path / "live.jsonl"
    code = ("import json, logging, sys\nlogging.basicConfig(level=logging.INFO)\n"
            "class NoTorch:\n"  # a device runs bundles without PyTorch
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from edgebridge.runtime.app import run_stream\n"
            "stats = run_stream(sys.argv[1], sys.argv[2], sinks=['jsonl:' + sys.argv[3]])\n"
            "sys.stdout.write(json.dumps(stats))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(bundle), f"file:{src}?loop=true", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)  # an endless, unthrottled replay: many lines sit in the file's buffer now
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(s) for s in text.splitlines()]  # every line, the last included, is complete JSON
    stats = json.loads(stdout)
    assert stats["reason"] == sig.name and stats["emitted"] == len(lines) > 5
    assert "\r" not in stderr  # no status line when stderr is a pipe


def test_status_line_draws_only_on_a_tty() -> None:
    snap = StatusSnapshot(12.0, 124.94, 10, 9, 1, 0, 2, 3.14, float("nan"), "stress")
    text = format_status(snap)
    assert "124.9 Hz" in text and "scored 9, flagged 1" in text and "reconn 2" in text
    assert "p50 3.1 p99 - ms" in text and text.endswith("last stress")
    piped = io.StringIO()
    quiet = StatusLine(piped)
    assert not quiet.update(snap, force=True) and piped.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    line = StatusLine(tty, interval_s=60.0)
    assert line.update(snap) and not line.update(snap)  # rate-limited
    line.close(snap)
    assert tty.getvalue().count("\r\033[K") == 2 and tty.getvalue().endswith("\n")
