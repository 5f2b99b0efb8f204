"""The big backbones (specs/datasets.md §1.7) with random weights and no downloads: I3D at the
real architecture sizes (1024-d, pytorch-i3d names, official/global pool), the BERT text branch on
a 2-layer config (hub-name-free local folder path too), and torchvision ResNet50 -> 256."""

from __future__ import annotations

import pytest
import torch

from mmbench.backbones import i3d
from mmbench.backbones.resnet50 import ResNet50Encoder
from mmbench.backbones.text import BertTextEncoder, tiny_bert_config
from mmbench.datasets import image_text as it


@pytest.mark.parametrize(("size", "kernel", "stride", "pad"), [(224, 7, 2, (2, 3)), (7, 3, 1, (1, 1)),
                                                               (5, 2, 2, (0, 1)), (8, 2, 2, (0, 0))])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, pad):
    assert i3d._same_pad(size, kernel, stride) == pad


@pytest.mark.slow
def test_i3d_has_the_published_layer_shapes_and_gives_1024_features():
    torch.manual_seed(0)
    model = i3d.InceptionI3d(3)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_2c_3x3.conv3d.weight"] == (192, 64, 3, 3, 3)
    assert shapes["Mixed_4b.b0.conv3d.weight"] == (192, 480, 1, 1, 1)
    assert shapes["Mixed_5c.b1b.conv3d.weight"] == (384, 192, 3, 3, 3)
    assert shapes["Mixed_5c.b3b.bn.running_mean"] == (128,)
    # parameter count from the I3D paper's Inception widths (Fig. 3), chained independently here
    def unit(i, o, k):
        return i * o * k**3 + 2 * o  # conv without bias + BN weight and bias

    expected, c = unit(3, 64, 7) + unit(64, 64, 1) + unit(64, 192, 3), 192
    for a, b1, b2, c1, c2, d in [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
                                 (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
                                 (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
                                 (256, 160, 320, 32, 128, 128), (256, 160, 320, 32, 128, 128),
                                 (384, 192, 384, 48, 128, 128)]:
        expected += unit(c, a, 1) + unit(c, b1, 1) + unit(b1, b2, 3) + unit(c, c1, 1) + unit(c1, c2, 3)
        expected += unit(c, d, 1)
        c = a + b2 + c2 + d
    assert c == 1024 and sum(p.numel() for p in model.parameters()) == expected == 12_287_264
    model.eval()
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        feats = model.features(x)
        out = model(x)
    assert feats.shape == (2, 1024, 2, 2, 2)  # T/8, H/32, W/32
    assert out.shape == (2, 1024) and torch.isfinite(out).all()
    assert torch.allclose(out, feats.mean(dim=(2, 3, 4)), atol=1e-6)  # kernel clamped to (2, 2, 2)


def test_official_pool_averages_the_first_8_of_10_time_steps(monkeypatch):
    model = i3d.InceptionI3d(2)
    feats = torch.randn(1, 1024, 10, 7, 7)
    monkeypatch.setattr(model, "features", lambda x: feats)
    assert torch.allclose(model(None), feats[:, :, :8].mean(dim=(2, 3, 4)), atol=1e-6)
    model.pool = "global"
    assert torch.allclose(model(None), feats.mean(dim=(2, 3, 4)), atol=1e-6)


def test_i3d_loads_matching_pytorch_i3d_keys_and_skips_the_rest(tmp_path):
    torch.manual_seed(1)
    src = i3d.InceptionI3d(3).state_dict()
    src["logits.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    src["logits.conv3d.bias"] = torch.zeros(400)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(src, path)
    rgb = i3d.build_i3d(3, path)
    assert rgb.loaded_weights[1:] == (len(src) - 2, 2)
    assert torch.equal(rgb.state_dict()["Mixed_5c.b0.conv3d.weight"], src["Mixed_5c.b0.conv3d.weight"])
    depth = i3d.build_i3d(1, path)  # 1-channel conv1 keeps its random weights, as the official code
    assert depth.loaded_weights[1:] == (len(src) - 3, 3)
    assert depth.Conv3d_1a_7x7.conv3d.weight.shape == (64, 1, 7, 7, 7)
    assert torch.equal(depth.state_dict()["Conv3d_1a_7x7.bn.weight"], src["Conv3d_1a_7x7.bn.weight"])


def test_two_layer_bert_runs_through_the_text_branch_and_mask_ignores_padding():
    torch.manual_seed(0)
    cfg = tiny_bert_config(len(it.tiny_vocab()))
    assert cfg.num_hidden_layers == 2
    enc = BertTextEncoder(cfg).eval()
    assert enc.proj.in_features == 32 and enc.out_dim == 256
    ids = it.encode_texts(["good day", "love people today"], it.text_options(10, it.TINY, it.TINY))
    with torch.no_grad():
        out = enc(ids)
        short = enc(ids[:1, :2])
    assert out.shape == (2, 256) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], short[0], atol=1e-4)  # official: BERT attends to the padding
    masked = BertTextEncoder(cfg, attention_mask=True).eval()
    masked.load_state_dict(enc.state_dict())
    with torch.no_grad():
        assert torch.allclose(masked(ids)[0], masked(ids[:1, :2])[0], atol=1e-5)


def test_bert_and_tokenizer_load_from_a_local_folder(tmp_path):
    from transformers import BertModel

    folder = tmp_path / "bert"
    BertModel(tiny_bert_config(len(it.tiny_vocab()))).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(it.tiny_vocab()) + "\n")
    enc = BertTextEncoder(str(folder))
    assert enc.bert.config.num_hidden_layers == 2
    ids = it.encode_texts(["good day"], it.text_options(8, str(folder), str(folder)))
    assert ids.shape == (1, 8) and enc(ids).shape == (1, 256)


@pytest.mark.slow
def test_resnet50_projects_2048_to_256_and_loads_a_local_file(tmp_path):
    torch.manual_seed(0)
    enc = ResNet50Encoder("none")
    assert enc.net.fc.in_features == 2048 and sum(b for b in (len(enc.net.layer1), len(enc.net.layer2),
                                                              len(enc.net.layer3), len(enc.net.layer4))) == 16
    enc.eval()
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    conv1 = torch.randn(64, 3, 7, 7)
    torch.save({"conv1.weight": conv1}, tmp_path / "resnet50.pth")
    loaded = ResNet50Encoder(str(tmp_path / "resnet50.pth"))
    assert torch.equal(loaded.net.conv1.weight, conv1)
