"""Recordings, loaders, paired windows and the synthetic generator (NumPy only)."""

from edgebridge.data import dalia, fog, generic, isruc, sleepedf, synthetic, wesad  # noqa: F401  (register the loaders)
