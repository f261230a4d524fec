"""Recordings, loaders, paired windows and the synthetic generator (NumPy only)."""
