"""Config resolution: presets, --set overrides, validation messages and run tags."""

import math

import pytest

from mmbench.benchmark.config import parse_overrides, resolve_config
from mmbench.errors import ConfigError, MMBenchError


def test_dataset_preset_sets_the_shared_training_setup():
    cfg = resolve_config("mfeat", "joint")
    assert cfg.train.epochs == 20 and cfg.train.batch_size == 64 and cfg.train.optimizer == "sgd"
    assert cfg.tag is None and cfg.run_name == "joint"
    assert cfg.sources["train.lr"].startswith("[guess]")


def test_overrides_accept_shorthand_dotted_and_method_keys_and_tag_the_run():
    cfg = resolve_config("mfeat", "joint", parse_overrides(["epochs=3", "train.lr=0.05", "method.head_init=torch"]))
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.05 and cfg.method_params["head_init"] == "torch"
    assert cfg.run_name == "joint-epochs3_head_inittorch_lr0.05"


def test_override_equal_to_the_default_does_not_tag_the_run():
    assert resolve_config("mfeat", "joint", {"epochs": 20}).tag is None


def test_unimodal_run_is_tagged_with_its_modality():
    cfg = resolve_config("mfeat", "unimodal", {"method.modality": "fourier"})
    assert cfg.run_name == "unimodal-fourier"


def test_unimodal_without_a_modality_says_how_to_choose_one():
    with pytest.raises(ConfigError, match="method.modality=NAME with NAME one of image, fourier"):
        resolve_config("mfeat", "unimodal")


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        resolve_config("mfeat", "joint", {"epoch": 3})
    msg = str(err.value)
    assert "unknown --set key 'epoch'" in msg and "epochs" in msg and "data.limit_train_per_class" in msg


def test_unknown_method_hyper_parameter_lists_the_method_keys():
    with pytest.raises(ConfigError, match="method.head_init, method.unimodal_bias"):
        resolve_config("mfeat", "joint", {"method.alpha": 1})


def test_wrong_value_type_is_a_config_error():
    with pytest.raises(ConfigError, match="epochs expects an integer"):
        resolve_config("mfeat", "joint", {"epochs": "many"})


def test_unknown_method_and_dataset_list_the_valid_names():
    with pytest.raises(MMBenchError, match="valid methods: .*joint.*unimodal"):
        resolve_config("mfeat", "jiont")
    with pytest.raises(MMBenchError, match="valid datasets: .*mfeat"):
        resolve_config("mfeet", "joint")


def test_parse_values():
    d = parse_overrides(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=text", "f=nan"])
    assert d["a"] == 1 and d["b"] == 0.5 and d["c"] is True and d["d"] == [1, 2] and d["e"] == "text"
    assert math.isnan(d["f"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_speed_settings_never_tag_a_run():
    cfg = resolve_config("mfeat", "joint", {"compile": True, "data.num_workers": 4, "eval_batch_size": 128})
    assert cfg.tag is None and cfg.train.compile is True and cfg.data.num_workers == 4


def test_a_non_default_preset_or_protocol_tags_the_run():
    assert resolve_config("mfeat", "joint", {"data.preset": "smoke"}).run_name == "joint-presetsmoke"
    assert resolve_config("mfeat", "joint", {"data.preset": "paper"}).tag is None
