"""Calibration data for INT8 export: real windows through the one Preprocessor (NumPy only)."""

from edgebridge.calibration.reader import DEFAULT_CALIB_COUNT, CalibrationReader, stratified_indices

__all__ = ["DEFAULT_CALIB_COUNT", "CalibrationReader", "stratified_indices"]
