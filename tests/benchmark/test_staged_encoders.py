"""The staged encoder interface (``mmbench.backbones.staged``): the ResNet18 encoders run stage by
stage give exactly their ``forward``; the other encoders are recognised as unstaged; the method
hook ``inspect_encoders`` sees the dataset's encoders before the heads are built."""

from __future__ import annotations

import pytest
import torch

from mmbench.backbones.resnet18 import AudioResNet18, FrameResNet18
from mmbench.backbones.small import MLP, SmallCNN
from mmbench.backbones.staged import encoder_classes, is_staged, refuse_unstaged, staged_forward
from mmbench.benchmark import registry
from mmbench.benchmark.config import resolve_config
from mmbench.errors import ConfigError


@pytest.mark.parametrize(
    "cls, shape",
    [(AudioResNet18, (3, 20, 33)), (AudioResNet18, (3, 1, 20, 33)), (FrameResNet18, (2, 3, 3, 32, 32))],
)
def test_staged_forward_equals_forward_bit_for_bit(cls, shape):
    torch.manual_seed(0)
    enc = cls(width=4)
    x = torch.randn(shape)
    for mode in (True, False):
        enc.train(mode)
        state = {k: v.clone() for k, v in enc.state_dict().items()}
        a = enc(x)
        enc.load_state_dict(state)  # BN running stats as before the first call
        b = staged_forward(enc, x)
        assert torch.equal(a, b)
    assert enc.stage_widths == (4, 8, 16, 32) and is_staged(enc)


def test_frame_encoder_per_sample_view_unfolds_frames_and_back():
    enc = FrameResNet18(width=4)
    x = torch.randn(2, 3, 3, 32, 32)
    h = enc.stem(x)
    assert h.shape == (6, 3, 32, 32)
    assert torch.equal(h[1 * 3 + 2], x[1, :, 2])  # sample 1, frame 2
    h = enc.stages()[0](h)
    u = enc.per_sample(h, 2)
    assert u.shape == (2, 4, 3, *h.shape[2:])
    assert torch.equal(u[1, :, 2], h[5])
    assert torch.equal(enc.from_per_sample(u), h)


def test_the_existing_encoders_numerics_are_unchanged():
    """A ResNet18 built under a seed has the same tensors as before the interface existed (no new
    parameters or buffers, same initialisation draws): the state dict keys of the trunk only."""
    torch.manual_seed(3)
    enc = AudioResNet18(width=4)
    assert all(k.startswith("trunk.") for k in enc.state_dict())
    torch.manual_seed(3)
    again = AudioResNet18(width=4)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in enc.state_dict().items())


def test_mfeat_and_other_encoders_are_not_staged():
    assert not is_staged(SmallCNN()) and not is_staged(MLP(6))
    classes = encoder_classes(registry.get_dataset("mfeat"), resolve_config("mfeat", "joint", {}).data)
    assert classes == {"image": SmallCNN, "fourier": MLP}
    with pytest.raises(
        ConfigError, match=r"^m needs staged convolutional encoders \(why\); mfeat uses SmallCNN for image$"
    ):
        refuse_unstaged("m", "mfeat", classes, "why")


def test_encoder_classes_builds_on_the_meta_device_and_draws_no_random_numbers():
    cfg = resolve_config("cremad", "joint", {"data.preset": "smoke"})
    torch.manual_seed(1)
    before = torch.get_rng_state()
    classes = encoder_classes(registry.get_dataset("cremad"), cfg.data)
    assert torch.equal(torch.get_rng_state(), before)
    assert classes == {"audio": AudioResNet18, "video": FrameResNet18}
    refuse_unstaged("m", "cremad", classes, "why")  # no error


def test_inspect_encoders_sees_the_datasets_encoders_before_build_heads():
    from mmbench.benchmark.trainer import build_run
    from mmbench.methods.joint import Joint

    seen = []

    class _Inspector(Joint):
        name = "test_inspector"

        def inspect_encoders(self, encoders):
            seen.append({m: type(e).__name__ for m, e in encoders.items()})

        def build_heads(self, feature_dims, num_classes):
            assert seen, "inspect_encoders runs first"
            return super().build_heads(feature_dims, num_classes)

    with registry.registered_method(_Inspector):
        cfg = resolve_config("mfeat", _Inspector.name, {"data.limit_train_per_class": 2}, device="cpu")
        build_run(cfg, registry.get_dataset("mfeat"), _Inspector, None, torch.device("cpu"))
    assert seen == [{"image": "SmallCNN", "fourier": "MLP"}]
