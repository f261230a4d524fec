"""Frame parsers (property-based fuzz) and SerialSource against a writer process on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import tty
from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebridge.devices.base import open_source
from edgebridge.devices.frames import BinaryFrameParser, CounterUnwrapper, CsvLineParser, make_parser
from edgebridge.devices.serial import SerialSource

N_CH = 4
SYNC, END = b"\xa5\x5a", b"\xc0"


def _frame(counter: int, values: tuple[int, ...]) -> bytes:
    """Reference encoder written independently of the parser: sync | u16 counter | 4×i16 | xor | end."""
    body = struct.pack("<H4h", counter & 0xFFFF, *values)
    return SYNC + body + bytes([reduce(lambda a, b: a ^ b, body, 0)]) + END


def _split_feed(parser, stream: bytes, cuts: list[int]) -> list:
    out, last = [], 0
    for c in sorted({min(c, len(stream)) for c in cuts}) + [len(stream)]:
        out.extend(parser.feed(stream[last:c]))
        last = c
    return out


frames_st = st.lists(st.tuples(st.integers(0, 0xFFFF), st.tuples(*[st.integers(-32768, 32767)] * N_CH)),
                     min_size=1, max_size=40)


# garbage: random bytes, bytes around a stray sync word, and truncated frames (a board reset mid-frame)
garbage_st = st.one_of(st.binary(max_size=24), st.binary(max_size=6).map(lambda b: b + SYNC + b[::-1]),
                       st.tuples(st.integers(0, 0xFFFF), st.integers(1, 13)).map(
                           lambda a: _frame(a[0], (1, 2, 3, 4))[:a[1]]))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(frames=frames_st, garbage=st.lists(garbage_st, min_size=40, max_size=40),
       corrupt=st.lists(st.integers(0, 10**6), max_size=5), cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_binary_parser_recovers_every_clean_frame(frames, garbage, corrupt, cuts) -> None:
    stream, expected = b"", []
    corrupt_idx = {c % len(frames) for c in corrupt}
    for k, (counter, values) in enumerate(frames):
        stream += garbage[k]
        frame = bytearray(_frame(counter, values))
        if k in corrupt_idx:  # flip one byte: this frame overlaps garbage and must not come out
            j = corrupt[[c % len(frames) for c in corrupt].index(k)] % len(frame)
            frame[j] ^= 0x5C
        else:
            expected.append((counter, tuple(float(v) for v in values)))
        stream += bytes(frame)
    parser = BinaryFrameParser(N_CH, dtype="int16", sync=SYNC, counter_bytes=2, checksum="xor", end=END)
    got = _split_feed(parser, stream, cuts)
    assert got == expected
    # every byte is accounted for: in a good frame, counted bad, or still waiting in the buffer
    assert parser.stats.bad_bytes + parser.frame_len * len(got) + len(parser._buf) == len(stream)
    assert parser.stats.frames == len(expected)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rows=st.lists(st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False, width=32)] * 3), min_size=1, max_size=30),
       garbage=st.lists(st.binary(max_size=20), min_size=30, max_size=30), cuts=st.lists(st.integers(0, 2000)),
       sep=st.sampled_from([",", "\t"]))
def test_csv_line_parser_recovers_lines(rows, garbage, cuts, sep) -> None:
    stream, expected = b"", []
    for k, row in enumerate(rows):
        stream += garbage[k].replace(b"\n", b"") + b"\n"  # garbage as a line of its own
        stream += (sep.join([str(k)] + [repr(v) for v in row]) + "\r\n").encode()
        expected.append((k, tuple(float(v) for v in row)))
    parser = CsvLineParser(3, counter_column=True)
    got = _split_feed(parser, stream, cuts)
    it = iter(got)
    assert all(any(g == e for g in it) for e in expected), "a clean line was lost"
    assert len(got) - len(expected) <= sum(1 for g in garbage if g.strip())


def test_binary_parser_options_and_registry() -> None:
    p = make_parser("binary", 2, dtype="int32", sync=b"\xaa", counter_bytes=4, scale=0.5, checksum="sum8", end=b"")
    f1, f2 = p.encode(7, (10, -20)), p.encode(8, (2**30, 3))
    assert len(f1) == 1 + 4 + 8 + 1
    assert p.feed(b"\xaa\x00junk" + f1[:5]) == []
    assert p.feed(f1[5:] + f2) == [(7, (5.0, -10.0)), (8, (2.0**29, 1.5))]
    assert p.stats.bad_bytes == 6 and p.stats.bad_frames >= 1
    with pytest.raises(KeyError, match="did you mean 'binary'"):
        make_parser("binar", 2)


def test_counter_unwrapper_wraps_and_counts_gaps() -> None:
    u = CounterUnwrapper(1 << 16)
    a = u(np.array([65533, 65534, 65535]))
    b = u(np.array([0, 1, 5]))  # wrap, then 3 lost
    assert a.tolist() == [65533, 65534, 65535] and b.tolist() == [65536, 65537, 65541]
    assert u(np.array([2])).tolist() == [65542] and u.resets == 1  # backwards: counted, count continues


WRITER = r"""
import os, struct, sys, time
from functools import reduce
fd, n, fs, start, skip_at, skip_n = (int(a) for a in sys.argv[1:7])
sys.stdin.readline()  # handshake: the reader has opened the port
t0 = time.monotonic()
print(t0, flush=True)
i = 0
while i < n:
    due = min(n, int((time.monotonic() - t0) * fs) + 1)  # samples whose time t0 + i/fs has come
    buf = b""
    while i < due:
        c = start + i
        if not (skip_at <= i < skip_at + skip_n):
            vals = [((c * 7 + 1000 * ch) % 30000) - 15000 for ch in range(4)]
            body = struct.pack("<H4h", c & 0xFFFF, *vals)
            buf += b"\xa5\x5a" + body + bytes([reduce(lambda a, b: a ^ b, body, 0)]) + b"\xc0"
        if i % 500 == 250:
            buf += b"\x00\xa5\x13garbage\xc0"
        i += 1
    if buf:
        os.write(fd, buf)
    time.sleep(0.001)
"""


def _pty_writer(n: int, fs_hz: float, start: int, skip_at: int, skip_n: int):
    master, slave = os.openpty()
    tty.setraw(slave)
    args = [str(v) for v in (master, n, int(fs_hz), start, skip_at, skip_n)]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *args], pass_fds=(master,), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, master, slave, os.ttyname(slave)


def test_serial_source_pty_writer_process_1khz() -> None:
    fs_hz, n, start, skip_at, skip_n = 1000.0, 2000, 64000, 1200, 15  # counter wraps at 65536 mid-stream
    proc, master, slave, path = _pty_writer(n, fs_hz, start, skip_at, skip_n)
    chunks, arrivals = [], []
    try:
        src = open_source(f"serial:{path}", fs_hz=fs_hz, n_channels=N_CH, parser="binary", dtype="int16",
                          counter_bytes=2, checksum="xor")
        with src:
            assert src.wait_open(5.0)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            t0 = float(proc.stdout.readline())
            deadline = time.monotonic() + 10.0
            while sum(c.n_samples for c in chunks) < n - skip_n and time.monotonic() < deadline:
                c = src.read(0.2)
                if c is not None:
                    chunks.append(c)
                    arrivals.append(time.monotonic())
        proc.wait(timeout=5)
    finally:
        proc.kill()
        os.close(master)
        os.close(slave)
    counters = np.concatenate([c.counter + np.arange(c.n_samples) for c in chunks])
    sent = np.array([i for i in range(n) if not skip_at <= i < skip_at + skip_n])
    assert np.array_equal(counters, sent)  # every sample, in order, with the true positions across the gap
    data = np.concatenate([c.data for c in chunks], axis=1)
    c_abs = start + sent
    ref = np.stack([((c_abs * 7 + 1000 * ch) % 30000) - 15000 for ch in range(N_CH)]).astype(np.float32)
    assert np.array_equal(data, ref)
    assert src.stats.gaps == 1 and src.stats.gap_samples == skip_n
    assert src.parser.stats.bad_bytes == len(b"\x00\xa5\x13garbage\xc0") * len(range(250, n, 500))
    for c in chunks:
        np.testing.assert_allclose(c.t_s, (c.counter + np.arange(c.n_samples)) / fs_hz)
    # latency: arrival of a chunk minus the time its last sample was due at the writer
    lat_ms = [1e3 * (a - (t0 + (c.counter + c.n_samples - 1) / fs_hz)) for a, c in zip(arrivals, chunks, strict=True)]
    p50, p99 = np.percentile(lat_ms, [50, 99])
    print(json.dumps({"pty_samples": int(counters.size), "latency_ms_p50": round(p50, 2), "p99": round(p99, 2)}))
    assert p50 < 100.0


def test_serial_source_survives_missing_port_and_port_loss(tmp_path) -> None:
    src = SerialSource("/dev/edgebridge-no-such-port", fs_hz=100.0, n_channels=2, reconnect_min_s=0.01,
                       reconnect_max_s=0.04)
    with src:
        assert src.read(0.25) is None
    assert src.stats.extra["open_failures"] >= 3 and not src.is_open
    # a port that vanishes mid-stream and comes back under the same name (a udev symlink, as /dev/serial/by-id/…)
    link = tmp_path / "ttyEB0"
    m1, s1 = os.openpty()
    tty.setraw(s1)
    link.symlink_to(os.ttyname(s1))
    src = SerialSource(str(link), fs_hz=100.0, n_channels=2, parser="csv_line", counter_column=True,
                       reconnect_min_s=0.01, reconnect_max_s=0.05)
    with src:
        assert src.wait_open(5.0)
        os.write(m1, b"0,1,2\n1,3,4\n")
        first = src.read(2.0)
        os.close(m1)  # the board goes away: reads fail with EIO, then the path cannot be opened
        os.close(s1)
        assert wait_for(lambda: not src.is_open, 2.0)
        time.sleep(0.2)
        m2, s2 = os.openpty()  # ... and it is plugged in again
        tty.setraw(s2)
        link.unlink()
        link.symlink_to(os.ttyname(s2))
        assert src.wait_open(5.0)
        time.sleep(0.05)
        os.write(m2, b"5,5,6\n6,7,8\n")
        second = src.read(2.0)
    os.close(m2)
    os.close(s2)
    assert first.data.tolist() == [[1.0, 3.0], [2.0, 4.0]] and first.counter == 0
    assert second.data.tolist() == [[5.0, 7.0], [6.0, 8.0]] and second.counter == 5
    assert src.stats.reconnects == 1 and src.stats.extra["open_failures"] >= 1
    assert src.stats.gaps == 1 and src.stats.gap_samples == 3


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.parametrize("preset, code, values", [
    ("int16_le", "h", (-32768, -1, 0, 32767)),
    ("int32_le", "i", (-(2**31), -5, 7, 2**31 - 1)),
    ("float32_le", "f", (-1.5, 0.0, 3.25, 1e6)),
])
def test_binary_presets_decode_independently_encoded_frames(preset: str, code: str, values: tuple) -> None:
    parser = make_parser(preset, n_channels=N_CH)
    stream = b""
    for counter in (3, 4, 5):
        body = struct.pack("<H" + code * N_CH, counter, *values)
        stream += SYNC + body + bytes([reduce(lambda a, b: a ^ b, body, 0)]) + END
    samples = parser.feed(b"\x00\xff" + stream)
    assert [s[0] for s in samples] == [3, 4, 5]
    for s in samples:
        np.testing.assert_array_equal(np.asarray(s[1], dtype=np.float64), np.asarray(values, dtype=np.float64))
