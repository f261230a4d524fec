"""The paper's six transfer directions as config files: they load, have the paper's bridge sizes, and run end to end.

Bridge parameter counts come from the real adapters' probes (models built on the meta device, so no weights are
allocated) and must equal the numbers the upstream scripts print (shared/reference/biox_upstream.md §1). The end-to-
end runs use random-init weights saved in each model's official file format, tiny data sets written in the real
on-disk formats (tests/fixtures_data.py), `edgebridge data prepare`, and `edgebridge train <config>` with only the
paths, epochs and sizes of the data changed; NormWear directions are `slow` (≈1.3 s per 3-s window on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fixtures_data import fog_rows, write_isruc, write_wesad
from safetensors.torch import save_file

from edgebridge.backbones import ClassifierHead, get_backbone
from edgebridge.backbones.loading import load_head
from edgebridge.bridge.checkpoint import load_bridged, make_bridge
from edgebridge.bridge.compose import hook_injected_forward
from edgebridge.bridge.config import BridgeConfig, ModelRef
from edgebridge.cli import main
from edgebridge.config import config_to_toml, load_config
from edgebridge.data.prepare import prepare_dataset
from edgebridge.metrics import class_weights
from edgebridge.old_head import HeadFitConfig, _fold_standardisation, fit_linear_head
from edgebridge.pipeline import resolve_specs
from edgebridge.runs import run_windows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# direction -> (new block m, old block l, bridge parameters) from the upstream scripts
PAPER = {
    "wesad_ppg2ecg": ("encoder.layers[7]", "basicblock_list[11]", 398_784),
    "wesad_ecg2ppg": ("basicblock_list[4]", "encoder.layers[2]", 188_912),
    "isruc_eeg2ecg": ("encoder.layers[7]", "blocks[2]", 1_813_984),
    "isruc_ecg2eeg": ("blocks[11]", "encoder.layers[0]", 140_000),
    "fog_eeg2emg": ("backbone.encoder_blocks[3]", "blocks[11]", 1_209_408),
    "fog_emg2eeg": ("blocks[6]", "backbone.encoder_blocks[10]", 712_000),
}


def meta_models(cfg):
    """Both backbones of a config on the meta device: shapes without weights (probing NormWear costs ~0.1 s)."""
    with torch.device("meta"):  # resolve_specs builds the default models to read their specs: free on meta
        spec_new, spec_old = resolve_specs(cfg)
        new = get_backbone(cfg.new.backbone, spec=spec_new, **cfg.new.kwargs)
        old = get_backbone(cfg.old.backbone, spec=spec_old, **cfg.old.kwargs)
    return new, old


@pytest.mark.parametrize("name", sorted(PAPER))
def test_config_loads_with_the_papers_positions_and_bridge_size(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.toml")
    assert cfg.name == name and cfg.train.batch_size == 16 and cfg.train.loss == "cosine"
    assert cfg.old.head is None and cfg.old.classes, "the configs let edgebridge fit the old model's head"
    new, old = meta_models(cfg)
    m_name, l_name, n_params = PAPER[name]
    assert (new.block_name(cfg.bridge.in_layer), old.block_name(cfg.bridge.out_layer)) == (m_name, l_name)
    bcfg = BridgeConfig.for_models(new, old, cfg.bridge.in_layer, cfg.bridge.out_layer, cfg.bridge.rank,
                                   cfg.bridge.n_prototypes, tuple(cfg.old.classes), ModelRef("n"), ModelRef("o"))
    bridge = make_bridge(bcfg)
    assert sum(p.numel() for p in bridge.parameters()) == n_params
    # the sizes the upstream scripts hard-coded: r·d_new + Np·N_old·r + d_old·Np
    r, np_ = cfg.bridge.rank, cfg.bridge.n_prototypes
    assert r * bcfg.d_in + np_ * bcfg.n_tokens * r + bcfg.d_out * np_ == n_params
    assert Path(cfg.new.checkpoint).parent.name in ("weights", "hubert-ecg-small")  # placeholders next to the repo


# --------------------------------------------------------------------------------------------- the head stage
def _blobs(n_per_class: tuple[int, ...], d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(n_per_class), d))
    z = np.concatenate([rng.normal(c, 1.0, (n, d)) for c, n in zip(centres, n_per_class, strict=True)]) * 40 + 7
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    return z.astype(np.float32), y.astype(np.int64)


def test_class_weights_are_sklearns_balanced_weights() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 11 + [1] * 6 + [2] * 3)
    np.testing.assert_allclose(class_weights(y, 3), compute_class_weight("balanced", classes=np.arange(3), y=y))
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0  # a class without training windows gets no weight


def test_head_fit_keeps_the_best_validation_epoch_and_reads_raw_features() -> None:
    from sklearn.metrics import balanced_accuracy_score

    z_tr, y_tr = _blobs((60, 20, 8), seed=0)
    z_va, y_va = _blobs((30, 10, 6), seed=0)
    z_va += np.random.default_rng(5).normal(0, 20, z_va.shape).astype(np.float32)
    cfg = HeadFitConfig(lr=0.05, epochs=15, batch_size=16, patience=15, standardize=True)
    head, info = fit_linear_head(z_tr, y_tr, z_va, y_va, ("a", "b", "c"), cfg)
    with torch.no_grad():
        pred = head(torch.from_numpy(z_va)).argmax(1).numpy()
    ba = balanced_accuracy_score(y_va, pred)
    assert ba == pytest.approx(info["val_balanced_accuracy"], abs=1e-9)
    assert ba == pytest.approx(max(h["val_balanced_accuracy"] for h in info["history"]), abs=1e-9)
    assert info["history"][info["best_epoch"]]["val_balanced_accuracy"] == pytest.approx(ba)
    assert ba > 0.8 and info["train_class_counts"] == [60, 20, 8]
    assert head.class_names == ("a", "b", "c") and not any(p.requires_grad for p in head.parameters())


def test_standardisation_folds_into_the_linear_layer() -> None:
    torch.manual_seed(0)
    head = ClassifierHead(5, ("x", "y"))
    mean, std = np.linspace(-3, 3, 5), np.linspace(0.5, 4, 5)
    z = torch.randn(7, 5, dtype=torch.float64).float() * 3
    with torch.no_grad():
        expected = head((z - torch.from_numpy(mean).float()) / torch.from_numpy(std).float())
    _fold_standardisation(head, mean, std)
    with torch.no_grad():
        torch.testing.assert_close(head(z), expected, atol=1e-5, rtol=1e-5)


def test_head_fit_rejects_labels_beyond_the_classes() -> None:
    z, y = _blobs((5, 5))
    with pytest.raises(ValueError, match="names only 1 classes"):
        fit_linear_head(z, y, z, y, ("only",), HeadFitConfig(epochs=1))
    with pytest.raises(ValueError, match="val split has no labelled windows"):
        fit_linear_head(z, y, z[:0], y[:0], ("a", "b"), HeadFitConfig(epochs=1))


# ------------------------------------------------------------------------------------ end to end, per direction
def _papagei_pt(state: dict, model: torch.nn.Module, out: Path) -> Path:
    """Zenodo ``papagei_s.pt``: a DataParallel state dict (``module.`` prefix)."""
    torch.save({f"module.{k}": v for k, v in state.items()}, out / "papagei_s.pt")
    return out / "papagei_s.pt"


def _hubert_safetensors(state: dict, model: torch.nn.Module, out: Path) -> Path:
    """Hugging Face ``Edoardo-BS/hubert-ecg-small/model.safetensors``."""
    path = out / "hubert-ecg-small" / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def _labram_pth(state: dict, model: torch.nn.Module, out: Path) -> Path:
    """``labram-base.pth``: ``{"model": student.* + pre-training-only tensors}``."""
    d = model.cls_token.shape[-1]
    student = {f"student.{k}": v for k, v in state.items()}
    student.update({"student.mask_token": torch.zeros(1, 1, d), "student.lm_head.weight": torch.zeros(8, d),
                    "student.lm_head.bias": torch.zeros(8)})
    torch.save({"model": student}, out / "labram-base.pth")
    return out / "labram-base.pth"


def _normwear_pth(state: dict, model: torch.nn.Module, out: Path) -> Path:
    """The NormWear release: a flat state dict of the ``NormWear`` module (encoder + MAE decoder)."""
    path = out / "normwear_last_checkpoint-15470-correct.pth"
    torch.save({k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}, path)
    return path


OFFICIAL_FORMATS = {"papagei_s": _papagei_pt, "hubert_ecg_small": _hubert_safetensors, "labram_base": _labram_pth,
                    "normwear": _normwear_pth}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """backbone name -> official-format file of a seeded random init (made once per module, on first use)."""
    out, made = tmp_path_factory.mktemp("weights"), {}

    def get(name: str, spec) -> str:
        if name not in made:
            torch.manual_seed(len(made))
            model = get_backbone(name, spec=spec)
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            made[name] = str(OFFICIAL_FORMATS[name](state, model, out))
        return made[name]

    return get


def _wesad(root: Path) -> dict:
    # 330-s sessions: 4 baseline + 4 stress + 2 amusement labelled 60-s windows per subject
    write_wesad(root, ["S2", "S3", "S4", "S5"], duration_s=330.0, full=False)
    return {"fractions": {"train": 1, "val": 1, "pair": 1, "test": 1}}


def _isruc(root: Path) -> dict:
    write_isruc(root, [1, 2, 3, 4], n_epochs=6)
    return {"fractions": {"train": 1, "val": 1, "pair": 1, "test": 1}}


FOG_COLUMNS = {"001": (27, 28, 31), "002": (27, 28, 31), "003": (28, 27, 31), "004": (28, 27, 31),
               "005": (28, 27, 31), "006": (27, 28, 31)}


def _fog(root: Path) -> dict:
    """Per patient two 3.3-s task files (normal, FOG) in the FilteredData format: 2 windows each at 0.3-s hops.

    Three patients go to the pair split so that it holds ≥ 200 LaBraM tokens for randreal prototypes (Np = 200).
    """
    for k, (patient, cols) in enumerate(sorted(FOG_COLUMNS.items())):
        d = root / "FilteredData" / patient
        d.mkdir(parents=True, exist_ok=True)
        for label in (0, 1):
            rows = fog_rows(int(3.3 * 500), cols, seed=2 * k + label)
            rows[:, 60] = label
            np.savetxt(d / f"task_{label + 1}.txt", rows, delimiter=",", fmt="%.3f")
    return {"fractions": {"train": 1, "val": 1, "pair": 3, "test": 1}}


DATASETS = {"wesad": _wesad, "isruc": _isruc, "fog": _fog}


def run_direction(name: str, tmp_path: Path, weights) -> None:
    cfg = load_config(CONFIGS / f"{name}.toml")
    dataset = name.split("_")[0]
    with torch.device("meta"):
        spec_new, spec_old = resolve_specs(cfg)
    options = DATASETS[dataset](tmp_path / "raw")
    prepare_dataset(dataset, tmp_path / "raw", tmp_path / "prepared", new=cfg.new_modality, old=cfg.old_modality,
                    **options)
    cfg.data.prepared = str(tmp_path / "prepared")
    cfg.new.checkpoint = weights(cfg.new.backbone, spec_new)
    cfg.old.checkpoint = weights(cfg.old.backbone, spec_old)
    cfg.train.epochs, cfg.head_fit.epochs = 1, 3
    path = tmp_path / f"{name}.toml"
    path.write_text(config_to_toml(cfg))
    result = CliRunner().invoke(main, ["-q", "train", str(path), "--runs-root", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    run_dir = Path(summary["run_dir"])
    m, l, n_params = cfg.bridge.in_layer, cfg.bridge.out_layer, PAPER[name][2]
    assert summary["positions"] == {"in_layer": m, "out_layer": l}
    assert summary["trainable_params"] == n_params
    assert 0.0 <= summary["bridged"]["balanced_accuracy"] <= 1.0
    # stage 1 fitted and saved the old head before anything read it; the bridge references that very file
    head_path = run_dir / "models" / "old_head.safetensors"
    info = json.loads((run_dir / "models" / "old_head.json").read_text())
    assert info["epochs_run"] >= 1 and sum(info["train_class_counts"]) > 0
    model, bcfg = load_bridged(run_dir / "bridge")
    assert bcfg.old_model.head == str(head_path)
    head = load_head(head_path, model.suffix.backbone.probe()[-1].out_dim)
    assert head.class_names == tuple(cfg.old.classes)
    torch.testing.assert_close(head.fc.weight, model.head.fc.weight)
    # the deployable chain equals the paper's hook-injected evaluation path (with a non-trivial bridge)
    with torch.no_grad():
        model.bridge.B.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    x_new, x_old, _ = next(run_windows(run_dir, "test").batches(2))
    x_new, x_old = torch.from_numpy(x_new), torch.from_numpy(x_old)
    with torch.no_grad():
        sliced = model(x_new)
        reference = hook_injected_forward(model.prefix.backbone, m, model.bridge, model.suffix.backbone, l,
                                          model.head, x_new, x_old)
    torch.testing.assert_close(sliced, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["wesad_ppg2ecg", "wesad_ecg2ppg", "isruc_eeg2ecg", "isruc_ecg2eeg"])
def test_direction_runs_end_to_end(name: str, tmp_path: Path, weights) -> None:
    run_direction(name, tmp_path, weights)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fog_eeg2emg", "fog_emg2eeg"])  # NormWear as new, then as old (nvar in batch)
def test_normwear_direction_runs_end_to_end(name: str, tmp_path: Path, weights) -> None:
    run_direction(name, tmp_path, weights)
