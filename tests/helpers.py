"""Small builders shared by the core tests (tiny seeded backbones at 50 Hz × 4 s, STYLE rule 19)."""

from __future__ import annotations

import torch

from edgebridge.backbones import ClassifierHead, get_backbone
from edgebridge.backbones.tiny import default_spec
from edgebridge.bridge.compose import BridgedModel
from edgebridge.bridge.layers import ProtoLowRankBridge


def as_if_trained(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give norm layers non-default statistics and biases, like a trained model's.

    At random init BatchNorm has zero mean/bias, so an all-zero input (the bridge at step 0) meets ReLU(0)
    everywhere and receives no gradient — a property of untrained nets that real frozen models do not share.
    """
    g = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.5)
    return module


def tiny_pair(new_name: str = "tiny_transformer", old_name: str = "tiny_cnn", seed: int = 0):
    torch.manual_seed(seed)
    new = as_if_trained(get_backbone(new_name, spec=default_spec("ppg")), 1).freeze()
    old = as_if_trained(get_backbone(old_name, spec=default_spec("ecg")), 2).freeze()
    head = ClassifierHead(old.probe()[-1].out_dim, ("a", "b", "c")).requires_grad_(False).eval()
    return new, old, head


def tiny_bridged(m: int = 1, l: int = 2, random_b: bool = True, **kw):
    new, old, head = tiny_pair(**kw)
    d = old.probe()[l]
    bridge = ProtoLowRankBridge(new.probe()[m].out_dim, d.in_dim, d.in_tokens, rank=4, n_prototypes=6)
    if random_b:
        torch.nn.init.normal_(bridge.B, std=0.5)
    return BridgedModel(new, m, bridge, old, l, head).eval(), new, old, head, bridge


def run_file_in_private_netns(test_file: str, env_flag: str, n_inner: int) -> None:
    """Re-run ``test_file`` under ``unshare -n`` with only ``lo`` up and a multicast route on it, and require
    ``n_inner`` passed tests there: multicast traffic (LSL discovery, BrainFlow's streaming board) never leaves the
    machine. Skips with the reason where the namespace cannot be made."""
    import shutil
    import subprocess
    import sys

    import pytest

    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to isolate multicast")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.strip()}")
    cmd = (f"ip link set lo up && ip route add 224.0.0.0/4 dev lo && {env_flag}=1 "
           f"'{sys.executable}' -m pytest -q -p no:cacheprovider '{test_file}'")
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"{n_inner} passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
