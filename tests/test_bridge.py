"""protoLRFC bridge math, prototype initialisation, and the sliced chain vs the paper's hook-injected forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_bridged

from edgebridge.bridge.compose import hook_injected_forward
from edgebridge.bridge.layers import ProtoLowRankBridge, bridge_param_count


def test_bridge_is_exactly_zero_at_init_and_counts_params() -> None:
    bridge = ProtoLowRankBridge(d_in=12, d_out=7, n_tokens=5, rank=3, n_prototypes=4)
    out = bridge(torch.randn(6, 12))
    assert out.shape == (6, 5, 7)
    assert torch.count_nonzero(out) == 0
    n_params = sum(p.numel() for p in bridge.parameters())
    assert n_params == bridge_param_count(12, 7, 5, 3, 4) == 3 * 12 + 4 * 5 * 3 + 7 * 4


def test_bridge_forward_matches_the_written_formula() -> None:
    torch.manual_seed(0)
    bridge = ProtoLowRankBridge(d_in=10, d_out=6, n_tokens=4, rank=3, n_prototypes=5)
    torch.nn.init.normal_(bridge.B)
    z = torch.randn(2, 10)
    a, b, p = (t.detach().numpy().astype(np.float64) for t in (bridge.A, bridge.B, bridge.prototypes))
    expected = np.stack([(p @ (zi @ a.T @ b.T).reshape(5, 4)).T for zi in z.numpy().astype(np.float64)])
    np.testing.assert_allclose(bridge(z).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("old_name", ["tiny_cnn", "tiny_transformer"])
def test_randreal_prototypes_are_real_feature_vectors(old_name: str) -> None:
    _, _, old, _, bridge = tiny_bridged(old_name=old_name, random_b=False)
    h = old.run_blocks(old.embed(torch.randn(3, *old.spec.input_shape)), 0, 2)
    rows = old.to_btd(h).reshape(-1, old.probe()[2].in_dim)  # BCL backbones give channel vectors per time step
    bridge.init_prototypes(rows, torch.Generator().manual_seed(0))
    protos = bridge.prototypes.detach().t()
    for col in protos:
        assert torch.isclose(rows, col).all(dim=1).any(), "prototype is not one of the candidate rows"
    with pytest.raises(ValueError, match="candidate"):
        bridge.init_prototypes(rows[:2])


@pytest.mark.parametrize("names", [("tiny_transformer", "tiny_cnn"), ("tiny_cnn", "tiny_transformer"),
                                   ("tiny_cnn", "tiny_cnn")])
@pytest.mark.parametrize("m, l", [(0, 0), (1, 2), (3, 3)])
def test_sliced_chain_equals_hook_injected_full_forward(names, m: int, l: int) -> None:
    model, new, old, head, bridge = tiny_bridged(m, l, new_name=names[0], old_name=names[1])
    x_new = torch.randn(4, *new.spec.input_shape)
    x_old = torch.randn(4, *old.spec.input_shape)  # only feeds discarded layers < l in the paper's path
    with torch.no_grad():
        sliced = model(x_new)
        reference = hook_injected_forward(new, m, bridge, old, l, head, x_new, x_old)
    assert sliced.shape == (4, 3)
    torch.testing.assert_close(sliced, reference, atol=1e-5, rtol=1e-5)


def test_block_index_out_of_range_is_named() -> None:
    from edgebridge.bridge.compose import BridgedModel

    _, new, old, head, bridge = tiny_bridged(1, 2)
    with pytest.raises(IndexError, match="out_layer = 9 is out of range"):
        BridgedModel(new, 1, bridge, old, 9, head)
    with pytest.raises(IndexError, match="in_layer = -1 is out of range"):
        BridgedModel(new, -1, bridge, old, 2, head)
