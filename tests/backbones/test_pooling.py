"""The CPU max-pool path gives nn.MaxPool2d's numbers bit for bit (outputs and gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from mmbench.backbones.pooling import MaxPool2d
from mmbench.backbones.small import SmallCNN


@pytest.mark.parametrize("args", [(2,), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_max_pool_matches_torch_bitwise_with_relu_ties(args):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 16, 15).relu()  # many tied zeros, as after the encoders' ReLU
    x[0, 0, :4, :4] = 1.0  # tied positive maxima: the first one takes the gradient
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    out_ref = nn.MaxPool2d(*args)(a)
    out = MaxPool2d(*args)(b)
    g = torch.randn_like(out_ref)
    out_ref.backward(g)
    out.backward(g)
    assert out.is_contiguous() and b.grad.is_contiguous()
    assert torch.equal(out, out_ref)
    assert torch.equal(b.grad, a.grad)
    with torch.no_grad():
        assert torch.equal(MaxPool2d(*args)(x), nn.MaxPool2d(*args)(x))


def test_small_cnn_training_step_is_bitwise_unchanged():
    """A training step of the mfeat image encoder: same output, gradients and BN statistics."""
    torch.manual_seed(0)
    new = SmallCNN()
    ref = copy.deepcopy(new)
    ref.net[6] = nn.MaxPool2d(2)
    x = torch.rand(8, 1, 16, 15)
    for net in (new, ref):
        out = net(x)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        net.out = out.detach()
    assert torch.equal(new.out, ref.out)
    for p, q in zip(new.parameters(), ref.parameters()):
        assert torch.equal(p.grad, q.grad)
    for p, q in zip(new.buffers(), ref.buffers()):
        assert torch.equal(p, q)
    assert new.state_dict().keys() == ref.state_dict().keys()
