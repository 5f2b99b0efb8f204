"""specs/methods/joint.md §8: concat split logits and the joint loss."""

import torch
import torch.nn.functional as F
from pytest import approx

from mmbench.methods.heads import ConcatHead


def _head(dims, W, b, modalities):
    head = ConcatHead(dims, len(b), modalities)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor(W))
        head.fc.bias.copy_(torch.tensor(b))
    return head


def test_two_modality_split_logits_sum_to_the_fused_logits():
    head = _head([2, 2], [[1, 0, 0.5, 0], [0, 1, 0, 0.5], [0.5, 0.5, 0.5, 0.5]], [0.2, -0.2, 0.0], ("audio", "video"))
    feats = {"audio": torch.tensor([[1, 0.5], [0.2, 0.1]]), "video": torch.tensor([[0.3, 0.2], [0.1, 0.4]])}
    out = head(feats)
    assert out["fusion"].tolist() == [approx([1.35, 0.4, 1.0], abs=1e-6), approx([0.45, 0.1, 0.4], abs=1e-6)]
    assert out["audio"].tolist() == [approx([1.1, 0.4, 0.75], abs=1e-6), approx([0.3, 0.0, 0.15], abs=1e-6)]
    assert out["video"].tolist() == [approx([0.25, 0.0, 0.25], abs=1e-6), approx([0.15, 0.1, 0.25], abs=1e-6)]
    assert torch.allclose(out["audio"] + out["video"], out["fusion"], atol=1e-6)
    loss = F.cross_entropy(out["fusion"], torch.tensor([0, 1]))
    assert loss.item() == approx(1.032319, abs=1e-6)


def test_three_modality_split_uses_a_third_of_the_bias():
    head = _head([1, 1, 1], [[1, 0.5, 2], [0, 1, -1]], [0.3, -0.6], ("rgb", "of", "depth"))
    feats = {"rgb": torch.tensor([[1.0]]), "of": torch.tensor([[2.0]]), "depth": torch.tensor([[-1.0]])}
    out = head(feats)
    assert out["fusion"][0].tolist() == approx([0.3, 2.4], abs=1e-6)
    assert out["rgb"][0].tolist() == approx([1.1, -0.2], abs=1e-6)
    assert out["of"][0].tolist() == approx([1.1, 1.8], abs=1e-6)
    assert out["depth"][0].tolist() == approx([-1.9, 0.8], abs=1e-6)


def test_full_bias_flag_adds_the_whole_bias_to_each_modality():
    head = _head([1, 1], [[1, 1]], [0.6], ("a", "b"))
    head.unimodal_bias = "full"
    out = head({"a": torch.tensor([[1.0]]), "b": torch.tensor([[2.0]])})
    assert out["a"].item() == approx(1.6) and out["b"].item() == approx(2.6)


def test_head_is_xavier_initialised_with_zero_bias():
    torch.manual_seed(0)
    head = ConcatHead([64, 64], 10, ("a", "b"))
    assert torch.all(head.fc.bias == 0)
    # xavier normal std = sqrt(2 / (fan_in + fan_out))
    assert head.fc.weight.std().item() == approx((2 / (128 + 10)) ** 0.5, rel=0.15)
