"""PNG plots written next to a run: probe scores, the position-selection CKA heatmap, training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_selection(probe_f1: list[float], cka: list[list[float]], in_layer: int, out_layer: int,
                   out_dir: Path) -> list[Path]:
    """Bar chart of probe macro-F1 per new block and a heatmap of CKA[m, l] with the chosen pair marked."""
    plt = _pyplot()
    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = np.nan_to_num(np.array(probe_f1, dtype=float))
    colors = ["tab:orange" if i == in_layer else "tab:blue" for i in range(values.size)]
    ax.bar(range(values.size), values, color=colors)
    ax.set_xticks(range(values.size))
    ax.set(xlabel="new-model block m", ylabel="probe macro-F1 (5-fold CV)",
           title="Stage 1: which new block predicts the old model best")
    fig.tight_layout()
    paths.append(out_dir / "selection_probe.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    matrix = np.array(cka, dtype=float)
    im = ax.imshow(matrix, aspect="auto", cmap="viridis", origin="lower")
    ax.scatter([out_layer], [in_layer], marker="*", s=250, color="red", label=f"chosen (m={in_layer}, l={out_layer})")
    ax.set(xlabel="old-model block l (input)", ylabel="new-model block m (output)",
           title="Stage 2: linear CKA between pooled features")
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    fig.colorbar(im, ax=ax, label="linear CKA")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "selection_cka.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def plot_training(history: list[dict], out_path: Path) -> Path:
    """Train and validation alignment loss per epoch (epoch -1 = before training)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train (pair split)")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set(xlabel="epoch", ylabel="1 − cos (old last block)", title="Bridge training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
