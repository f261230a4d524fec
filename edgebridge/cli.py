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
        from edgebridge.errors import USER_ERRORS

        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
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


if __name__ == "__main__":  # pragma: no cover
    main()
