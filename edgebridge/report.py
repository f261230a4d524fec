"""Human-readable tables for CLI output (JSON goes through ``--json`` instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line, sep] + ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells])


def format_summary(s: dict[str, Any]) -> str:
    """The quickstart/train/evaluate table: oracle vs bridged vs chance, parameters, positions, time."""
    lines = []
    if "bridged" in s:
        rows = []
        for key, title in (("oracle", "old model on OLD modality (oracle)"),
                           ("bridged", "bridged model on NEW modality only"), ("chance", "chance")):
            m = s[key]
            rows.append({"model": title, "balanced acc": f"{m['balanced_accuracy']:.3f}",
                         "macro F1": f"{m['f1_macro']:.3f}" if "f1_macro" in m else "",
                         "kappa": f"{m['cohen_kappa']:.3f}" if "cohen_kappa" in m else ""})
        lines.append(format_table(rows, ["model", "balanced acc", "macro F1", "kappa"]))
        lines.append("")
        lines.append(f"held-out test: {s['n_test_windows']} windows from subjects {', '.join(s['test_subjects'])}")
        lines.append(f"trainable (bridge) parameters: {s['trainable_params']:,} = "
                     f"{100 * s['trainable_share']:.2f}% of the two frozen models ({s['frozen_params']:,})")
    pos = s.get("positions", {})
    if pos:
        lines.append(f"positions: new block m={pos['in_layer']} -> old block l={pos['out_layer']}")
    if "training" in s:
        t = s["training"]
        lines.append(f"bridge training: {t['epochs_run']} epochs, best epoch {t['best_epoch']}, "
                     f"val alignment loss {t['best_val_loss']:.4f}{' (early stop)' if t['stopped_early'] else ''}")
    if "seconds" in s:
        lines.append(f"time: {s['seconds']:.1f} s")
    if s.get("run_dir"):
        lines.append(f"run directory: {s['run_dir']}")
    return "\n".join(lines)


def describe_backbones() -> list[dict[str, Any]]:
    """One row per registered adapter; parameter counts come from a build on the meta device (no memory)."""
    import torch

    from edgebridge.backbones.registry import get_backbone_entry, list_backbones

    rows = []
    for name in list_backbones():
        entry = get_backbone_entry(name)
        row: dict[str, Any] = {"name": name, "modality": entry.modality, "licence": entry.licence,
                               "weights": entry.weights, "description": entry.description}
        kwargs = entry.tiny_kwargs if name == "generic" else {}
        with torch.device("meta"):
            model = entry.factory(**kwargs)
        row["params"] = sum(p.numel() for p in model.parameters())
        spec = model.spec
        row["input"] = f"{spec.n_channels}ch x {spec.window_s:g}s @ {spec.fs_hz:g}Hz"
        row["spec"] = spec.to_dict()
        rows.append(row)
    return rows


def format_bench(result: dict[str, Any]) -> str:
    """Table of ``edgebridge bench`` results: one row per precision plus the PyTorch reference."""
    rows = []
    for name, r in result.items():
        if name == "meta" or not isinstance(r, dict):
            continue
        if "skipped" in r:
            rows.append({"model": name, "p50 ms": "-", "p99 ms": "-", "windows/s": "-", "bal. acc": "-",
                         "note": f"skipped: {r['skipped']}"})
            continue

        def num(key: str, fmt: str, r: dict = r) -> str:
            return format(r[key], fmt) if isinstance(r.get(key), (int, float)) else "-"

        rows.append({"model": name, "p50 ms": num("p50_ms", ".2f"), "p99 ms": num("p99_ms", ".2f"),
                     "windows/s": num("throughput_per_s", ".0f"), "bal. acc": num("balanced_accuracy", ".3f"),
                     "note": ", ".join(r.get("providers", [])) if isinstance(r.get("providers"), list) else ""})
    return format_table(rows, ["model", "p50 ms", "p99 ms", "windows/s", "bal. acc", "note"])
