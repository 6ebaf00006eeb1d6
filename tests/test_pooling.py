"""Conv nets pool with fixed windows, so `deterministic: true` also trains on CUDA.

torch refuses these modules' CUDA backward under `torch.use_deterministic_algorithms(True)`
(its documented list); no shipped network may contain one. The CUDA run itself is in
tests/test_train_gpu.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks import build_network
from lightning_modules.pooling import pool_to

NO_DETERMINISTIC_CUDA_BACKWARD = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool3d,
    nn.MaxPool3d,
    nn.FractionalMaxPool2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    nn.EmbeddingBag,
)


@pytest.mark.parametrize(("h", "out"), [(h, o) for h in range(1, 13) for o in (1, 2) if o <= h])
def test_pool_to_reaches_the_size_and_matches_adaptive_pooling_when_it_divides(h, out):
    x = torch.randn(2, 3, h, h + 1)
    got = pool_to(h, h + 1, out, min(out, h + 1))(x)
    assert got.shape == (2, 3, out, out)
    if h % out == 0 and (h + 1) % out == 0:
        assert torch.allclose(got, F.adaptive_avg_pool2d(x, out), atol=1e-6)
    # every cell is an average of input cells: bounded by the input's range
    assert got.min() >= x.min() - 1e-6 and got.max() <= x.max() + 1e-6


def test_pool_to_refuses_growing_and_sizes_equal_windows_cannot_reach():
    with pytest.raises(ValueError, match="cannot pool a 2x2 map to 3x3"):
        pool_to(2, 2, 3, 3)
    with pytest.raises(ValueError, match="cannot pool a 5x5 map to 4x4 .*give 3x3"):
        pool_to(5, 5, 4, 4)


@pytest.mark.parametrize(("arch", "kernel_size"), [("cnn", 3), ("cnn", 2), ("resnet", 3)])
@pytest.mark.parametrize("shape", [[1, 8, 8], [3, 7, 9], [1, 28, 28], [1, 3, 3]])
def test_conv_nets_have_no_module_without_a_deterministic_cuda_backward(arch, shape, kernel_size):
    net = build_network(arch, shape, 4, width=8, depth=3, kernel_size=kernel_size)
    bad = [type(m).__name__ for m in net.modules() if isinstance(m, NO_DETERMINISTIC_CUDA_BACKWARD)]
    assert bad == []
    torch.use_deterministic_algorithms(True)
    try:
        out = net(torch.randn(2, *shape))
        out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)
    assert out.shape == (2, 4)


def test_resnet_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="resnet needs an odd kernel_size"):
        build_network("resnet", [1, 8, 8], 4, kernel_size=2)
