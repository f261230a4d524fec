"""SignalSpec validation, pure per-window DSP, and the one Preprocessor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from edgebridge import dsp
from edgebridge.preprocess import Preprocessor, SignalError
from edgebridge.spec import SignalSpec, SpecError


def _spec(**kw) -> SignalSpec:
    base = dict(modality="ppg", fs_hz=50.0, channels=("ppg",), window_s=4.0, stride_s=2.0, bandpass_hz=(0.5, 8.0))
    base.update(kw)
    return SignalSpec(**base)


def test_spec_round_trip_and_derived_sizes() -> None:
    spec = _spec(channels=("a", "b"))
    assert SignalSpec.from_json(spec.to_json()) == spec
    assert spec.input_shape == (2, 200)
    assert spec.window_samples(64.0) == 256 and spec.stride_samples(64.0) == 128


@pytest.mark.parametrize("kw, msg", [
    ({"fs_hz": 0}, "fs_hz"), ({"bandpass_hz": (0.5, 30.0)}, "fs_hz/2"), ({"window_s": 4.01}, "whole number"),
    ({"channels": ()}, "channel"), ({"channels": ("a", "a")}, "repeat"), ({"norm": "minmax"}, "unknown norm"),
])
def test_spec_rejects_inconsistent_fields(kw, msg) -> None:
    with pytest.raises(SpecError, match=msg):
        _spec(**kw)


def test_spec_from_dict_names_unknown_field() -> None:
    d = _spec().to_dict()
    d["fs"] = 5
    with pytest.raises(SpecError, match="fs"):
        SignalSpec.from_dict(d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bandpass_is_bit_identical_to_scipy_sosfiltfilt(dtype) -> None:
    """The cached-state filter must not move a single bit: offline windows, live windows and trained models agree."""
    x = np.random.default_rng(3).standard_normal((3, 700)).astype(dtype)
    sos = sps.butter(4, (0.5, 12.0), "bandpass", fs=125.0, output="sos")
    expected = sps.sosfiltfilt(sos, x, axis=1, padlen=27).astype(np.float32)
    np.testing.assert_array_equal(dsp.sos_bandpass(x, 125.0, 0.5, 12.0, 4), expected)


def test_dsp_functions_are_pure_and_match_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 500)).astype(np.float32)
    before = x.copy()
    y = dsp.sos_bandpass(x, 50.0, 0.5, 8.0, 4)
    ref = sps.sosfiltfilt(sps.butter(4, (0.5, 8.0), "bandpass", fs=50.0, output="sos"), x.astype(np.float64),
                          axis=1, padlen=27)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    z = dsp.zscore(x)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-3)
    np.testing.assert_array_equal(x, before)


def test_resample_preserves_a_sine() -> None:
    t_in = np.arange(640) / 64.0
    x = np.sin(2 * np.pi * 1.5 * t_in)[None].astype(np.float32)
    y = dsp.resample(x, 64.0, 50.0)
    t_out = np.arange(500) / 50.0
    inner = slice(25, -25)  # edges carry filter transients
    np.testing.assert_allclose(y[0, inner], np.sin(2 * np.pi * 1.5 * t_out)[inner], atol=2e-2)


def test_preprocessor_resamples_filters_and_normalises() -> None:
    spec = _spec()
    pre = Preprocessor(spec, fs_in_hz=64.0)
    t = np.arange(256) / 64.0
    raw = (5 + 3 * np.sin(2 * np.pi * 1.2 * t) + 0.5 * t)[None].astype(np.float32)
    out = pre(raw)
    assert out.shape == (1, 200) and out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3
    peak_hz = np.fft.rfftfreq(200, 1 / 50.0)[np.argmax(np.abs(np.fft.rfft(out[0])))]
    assert abs(peak_hz - 1.25) <= 0.25
    np.testing.assert_array_equal(pre(raw), out)  # deterministic


def test_preprocessor_rejects_bad_windows() -> None:
    pre = Preprocessor(_spec(), fs_in_hz=64.0)
    with pytest.raises(SignalError, match="shape"):
        pre(np.zeros((1, 255), np.float32))
    with pytest.raises(SignalError, match="shape"):
        pre(np.zeros((2, 256), np.float32))
    bad = np.zeros((1, 256), np.float32)
    bad[0, 10] = np.nan
    with pytest.raises(SignalError, match="NaN"):
        pre(bad)
    with pytest.raises(SpecError, match="source rate"):
        Preprocessor(_spec(bandpass_hz=(0.5, 20.0)), fs_in_hz=32.0)
