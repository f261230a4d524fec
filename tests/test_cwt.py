"""The Ricker CWT front end against independent re-computations of scipy's removed ``signal.cwt``/``ricker``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from edgebridge.backbones.cwt import (
    NORMWEAR_WIDTHS,
    NormWearScalogram,
    RickerCWT,
    cwt_ricker_numpy,
    ricker_kernel,
    scalogram_numpy,
)


def scipy_ricker(points: float, a: float) -> np.ndarray:
    """scipy.signal.ricker as it was (scipy ≤ 1.14), written out from its formula."""
    amp = 2 / (np.sqrt(3 * a) * (np.pi ** 0.25))
    vec = np.arange(0, points) - (points - 1.0) / 2
    return amp * (1 - vec ** 2 / a ** 2) * np.exp(-(vec ** 2) / (2 * a ** 2))


def scipy_cwt(data: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Body of the removed scipy.signal.cwt for a real wavelet, using scipy.signal.convolve (still present)."""
    out = np.empty((len(widths), len(data)))
    for i, width in enumerate(widths):
        n = np.min([10 * width, len(data)])
        out[i] = signal.convolve(data, np.conj(scipy_ricker(n, width)[::-1]), mode="same")
    return out


def direct_same_conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'same' convolution from its definition: full sum y[m] = Σ_j x[j]·k[m-j], then the centred len(x) samples."""
    full = np.zeros(len(x) + len(k) - 1)
    for m in range(len(full)):
        for j in range(len(x)):
            if 0 <= m - j < len(k):
                full[m] += x[j] * k[m - j]
    start = (len(full) - len(x)) // 2
    return full[start:start + len(x)]


def test_widths_are_normwears() -> None:
    assert len(NORMWEAR_WIDTHS) == 65
    assert NORMWEAR_WIDTHS[0] == pytest.approx(0.1) and NORMWEAR_WIDTHS[-1] == pytest.approx(64.1)


@pytest.mark.parametrize("n_times", [388, 63, 20])
def test_torch_cwt_matches_scipy_algorithm(n_times: int) -> None:
    x = np.random.default_rng(n_times).standard_normal(n_times)
    ref = scipy_cwt(x, np.arange(0.1, 65))
    got = RickerCWT(n_times)(torch.from_numpy(x).float()[None])[0].T.double().numpy()
    err = np.abs(got - ref).max()
    # float32 convolution of O(10) values: ~1e-6 measured (1.3e-6 at L=388)
    assert err < 1e-5 * max(1.0, np.abs(ref).max()), err
    assert np.abs(cwt_ricker_numpy(x) - ref).max() < 1e-10


def test_same_convolution_alignment_from_definition() -> None:
    """Independent of scipy: the per-width offsets inside the packed conv weight reproduce 'same' exactly."""
    n_times = 20
    x = np.random.default_rng(1).standard_normal(n_times)
    widths = np.arange(0.1, 65)
    ref = np.stack([direct_same_conv(x, scipy_ricker(min(10 * w, n_times), w)[::-1]) for w in widths])
    got = RickerCWT(n_times)(torch.from_numpy(x).float()[None])[0].T.double().numpy()
    assert np.abs(got - ref).max() < 1e-5
    assert np.abs(cwt_ricker_numpy(x) - ref).max() < 1e-12


def test_kernel_lengths_and_peak() -> None:
    for w in NORMWEAR_WIDTHS:
        k = ricker_kernel(w, 388)
        assert k.shape[0] == len(np.arange(0, min(10 * w, 388)))
    k = ricker_kernel(2.1, 1000)  # 21 samples, centre sample at t = 0 carries the amplitude
    assert k.shape == (21,) and k[10] == pytest.approx(2 / (math.sqrt(3 * 2.1) * math.pi ** 0.25))


def test_scalogram_planes_and_layout() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 65)).astype(np.float32)
    got = NormWearScalogram(65)(torch.from_numpy(x))
    assert got.shape == (2, 3, 3, 63, 65)
    ref = scalogram_numpy(x[1])
    assert np.abs(got[1].double().numpy() - ref).max() < 1e-5
    # plane 1 is the CWT of the first difference: check it against scipy's algorithm directly
    d1 = np.diff(x[0, 2].astype(np.float64))[1:]
    assert np.abs(got[0, 2, 1].double().numpy() - scipy_cwt(d1, np.arange(0.1, 65)).T).max() < 1e-5
    # a straight line has zero second difference, hence a zero third plane
    ramp = torch.linspace(-1, 1, 65).reshape(1, 1, 65)
    assert NormWearScalogram(65)(ramp)[0, 0, 2].abs().max() < 1e-6


def test_cwt_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = NormWearScalogram(65).eval()
    x = torch.randn(1, 2, 65)
    path = tmp_path / "cwt.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert np.abs(y - model(x).detach().numpy()).max() < 1e-4
