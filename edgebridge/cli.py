"""``edgebridge`` command line: each verb parses flags and makes one library call (no logic here)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from edgebridge import __version__
from edgebridge.report import format_summary, format_table

RUNS_ROOT = click.option("--runs-root", default="runs", show_default=True, type=click.Path(file_okay=False),
                         help="Folder holding run directories.")
DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                      help="Where to train (auto = CUDA with bf16 mixed precision if present, else CPU).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else human)


class _Group(click.Group):
    """Turns expected user errors into one red line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from edgebridge.errors import is_user_error

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if not is_user_error(exc) or logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="edgebridge")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, with tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def main(verbose: int, quiet: bool) -> None:
    """Move a biosignal model's skill to a new sensor (BioX-Bridge) and run it on edge devices."""
    _setup_logging(verbose, quiet)


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Keep the run under this folder.")
@click.option("--epochs", type=int, default=None, help="Bridge training epochs (default from the built-in config).")
@JSON
def quickstart(out: str | None, epochs: int | None, as_json: bool) -> None:
    """Run the whole method on the built-in synthetic ECG→PPG stress task and print the result."""
    from edgebridge.api import quickstart as run

    summary = run(out, epochs)
    _emit(summary, as_json, format_summary(summary))


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@RUNS_ROOT
@DEVICE
@JSON
def select(config: str | None, runs_root: str, device: str | None, as_json: bool) -> None:
    """Pick where to connect the models (linear probe + CKA) on the pair split."""
    from edgebridge.api import select_positions

    run_dir, summary = select_positions(config, runs_root, device)
    pos = summary["positions"]
    _emit(summary, as_json, f"new block m={pos['in_layer']} -> old block l={pos['out_layer']}\n"
          f"plots: {run_dir}/selection_probe.png, {run_dir}/selection_cka.png\n"
          f"next: edgebridge train {config or ''}".rstrip())


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@RUNS_ROOT
@click.option("--resume", type=click.Path(exists=True, file_okay=False), default=None,
              help="Continue an interrupted run directory from its last checkpoint.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@DEVICE
@JSON
def train(config: str | None, runs_root: str, resume: str | None, epochs: int | None, device: str | None,
          as_json: bool) -> None:
    """Train a bridge (built-in demo when no CONFIG) into a new run directory under runs/."""
    from edgebridge.api import train_bridge

    run_dir, summary = train_bridge(config, runs_root, resume, device, epochs)
    _emit(summary, as_json, format_summary(summary) + f"\nrun: {run_dir}\nnext: edgebridge export {run_dir} --trt")


@main.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@RUNS_ROOT
@JSON
def evaluate(run_dir: str | None, runs_root: str, as_json: bool) -> None:
    """Held-out-subject metrics of a trained run (default: the latest)."""
    from edgebridge.api import evaluate as run

    summary = run(run_dir, runs_root)
    _emit(summary, as_json, format_summary(summary))


@main.command()
@JSON
def models(as_json: bool) -> None:
    """List the registered model adapters with parameter counts, input spec and weights licence."""
    from edgebridge.report import describe_backbones

    rows = describe_backbones()
    _emit(rows, as_json, format_table(rows, ["name", "modality", "params", "input", "licence", "weights"]))


@main.command("export")
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@RUNS_ROOT
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Bundle folder (default: RUN_DIR/bundle).")
@click.option("--precision", default="fp32,fp16,int8", show_default=True,
              help="Comma-separated precisions to export.")
@click.option("--calib", default=None, help="int8 calibration windows: a split name of the run, or an .npz "
              "(default: the run's pair split).")
@click.option("--trt", is_flag=True, help="Also build TensorRT engines here (needs TensorRT and a GPU).")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, pinned for TensorRT).")
@click.option("--allow-int8-drop", is_flag=True, help="Keep int8 even if balanced accuracy drops > 1 point "
              "(recorded in the manifest).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True)
def export(run_dir: str | None, runs_root: str, out: str | None, precision: str, calib: str | None, trt: bool,
           opset: int | None, allow_int8_drop: bool, exporter: str) -> None:
    """Export a trained run to a deployable bundle (ONNX fp32/fp16/int8, optional TensorRT engines)."""
    from edgebridge.export.api import export_run
    from edgebridge.runs import resolve_run

    bundle = export_run(resolve_run(run_dir, runs_root), out, tuple(p.strip() for p in precision.split(",") if p),
                        calib, trt, opset, allow_int8_drop, exporter)
    click.echo(f"bundle: {bundle}\nnext: edgebridge verify {bundle} && edgebridge bench {bundle}")


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@JSON
def verify(bundle: str, as_json: bool) -> None:
    """Re-check a bundle's hashes, ONNX validity and parity on its own check windows."""
    from edgebridge.export.api import verify_bundle

    report = verify_bundle(bundle)
    _emit(report, as_json, json.dumps(report, indent=2, default=str))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--batch", "batch_sizes", default="1,16", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", type=int, default=None, help="ONNX Runtime intra-op threads.")
@click.option("--no-reference", is_flag=True, help="Skip the PyTorch reference (paper's evaluation path).")
@JSON
def bench(bundle: str, batch_sizes: str, threads: int | None, no_reference: bool, as_json: bool) -> None:
    """Latency (p50/p99), throughput and accuracy per precision and provider, vs the PyTorch reference."""
    from edgebridge.bench import bench_bundle
    from edgebridge.report import format_bench

    result = bench_bundle(bundle, tuple(int(b) for b in batch_sizes.split(",")), threads=threads,
                          reference=not no_reference)
    _emit(result, as_json, format_bench(result))


@main.group()
def data() -> None:
    """Prepare real data sets into paired, windowed, subject-split shards."""


@data.command("prepare")
@click.argument("name")
@click.argument("root", type=click.Path(exists=True))
@click.argument("out", type=click.Path())
@click.option("--mode", type=click.Choice(["live", "paper"]), default="live", show_default=True,
              help="live: raw windows for the per-window Preprocessor; paper: the paper's offline preprocessing.")
@click.option("--new", "new_modality", default=None, help="New modality (e.g. ppg).")
@click.option("--old", "old_modality", default=None, help="Old modality (e.g. ecg).")
@click.option("--seed", type=int, default=None, help="Split seed.")
@click.option("--overwrite", is_flag=True, help="Replace a folder prepared with other settings.")
def data_prepare(name: str, root: str, out: str, mode: str, new_modality: str | None, old_modality: str | None,
                 seed: int | None, overwrite: bool) -> None:
    """Turn data set NAME (wesad, dalia, isruc, fog, sleepedf, generic) at ROOT into shards in OUT."""
    from edgebridge.data.prepare import prepare_dataset

    options = {k: v for k, v in (("new", new_modality), ("old", old_modality), ("seed", seed)) if v is not None}
    path = prepare_dataset(name, root, out, mode, overwrite=overwrite, **options)
    click.echo(f"prepared: {path}\nnext: edgebridge data inspect {path}")


@data.command("inspect")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Plot file (default OUT/windows.png).")
@JSON
def data_inspect(out: str, png: str | None, as_json: bool) -> None:
    """Subjects, windows per split and class counts of a prepared folder, plus a PNG of paired windows."""
    from edgebridge.data.prepare import inspect_prepared
    from edgebridge.data.prepared import plot_prepared

    summary = inspect_prepared(out)
    summary["plot"] = str(plot_prepared(out, png or Path(out) / "windows.png"))
    _emit(summary, as_json, json.dumps(summary, indent=2, default=str))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--source", default="brainflow:synthetic", show_default=True,
              help="brainflow:<board>[?serial_port=..], serial:<port>?parser=.., lsl:<name>, "
                   "file:<path>[?realtime=0].")
@click.option("--channels", default=None, help="Comma-separated source channels to use, in the model's order.")
@click.option("--sink", "sinks", multiple=True, help="jsonl:- (default), jsonl:<file>, csv:<file>, lsl:<name>.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True)
@click.option("--provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default=None,
              help="ONNX Runtime execution provider (default: the best available).")
@click.option("--max-windows", type=int, default=None,
              help="Stop after this many windows (default: run until stopped).")
def stream(bundle: str, source: str, channels: str | None, sinks: tuple[str, ...], precision: str,
           provider: str | None, max_windows: int | None) -> None:
    """Live predictions from a sensor; the bundle's SignalSpec sets window, hop, rate and filters."""
    from edgebridge.runtime.app import run_stream

    stats = run_stream(bundle, source, sinks=sinks or ("jsonl:-",), precision=precision, provider=provider,
                       channels=tuple(channels.split(",")) if channels else None, max_windows=max_windows)
    logging.getLogger("edgebridge.stream").info("stopped: %s", json.dumps(stats, default=str))


@main.command()
@JSON
def doctor(as_json: bool) -> None:
    """What this machine can run: Python, torch, ONNX Runtime providers, TensorRT, GPU, JetPack, BrainFlow, LSL."""
    from edgebridge.doctor import doctor as check
    from edgebridge.doctor import format_report

    report = check()
    _emit(report, as_json, format_report(report))


if __name__ == "__main__":  # pragma: no cover
    main()
