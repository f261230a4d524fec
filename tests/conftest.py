from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--run-hardware", action="store_true", default=False, help="run tests marked hardware")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, option in (("slow", "--run-slow"), ("hardware", "--run-hardware")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"needs {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _tensorrt_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``gpu`` and ``trt`` tests skip themselves with a reason where CUDA or TensorRT is missing."""
    if "gpu" in item.keywords and not _cuda_available():
        pytest.skip("needs a CUDA GPU (none here)")
    if "trt" in item.keywords and not _tensorrt_available():
        pytest.skip("needs TensorRT (not installable from PyPI; present on Jetson/JetPack or NVIDIA's index)")
