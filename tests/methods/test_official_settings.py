"""``protocol = "official"`` is each official script, setting by setting.

One table per method with an official setup, written from the official code (file and line in
each row's comment; repositories as fetched for issue 13). ``[guess]`` rows are settings the
official code does not fix for that dataset (mmbench's reading, named as such in the TOML).
"""

from __future__ import annotations

import pytest

from mmbench.benchmark.config import resolve_config, value_sources

# every official script: fp32, the whole train set, the best test epoch (harness rows)
HARNESS = {
    "train.amp": "off",  # no autocast / GradScaler / .half() in any of the 7 repositories (git grep)
    "data.val_fraction": 0.0,  # train on train.csv / the train list, evaluate on test only
}

OFFICIAL = {
    # GeWu-Lab/OGM-GE_CVPR2022 main.py (README: CREMA-D --alpha 0.8)
    ("ogm_ge", "cremad"): {
        "train.epochs": 100,  # main.py:34 --epochs 100
        "train.batch_size": 64,  # main.py:33 --batch_size 64
        "train.optimizer": "sgd",  # main.py:246 optim.SGD
        "train.lr": 1e-3,  # main.py:37 --learning_rate 0.001
        "train.momentum": 0.9,  # main.py:246 momentum=0.9
        "train.weight_decay": 1e-4,  # main.py:246 weight_decay=1e-4
        "train.schedule": "step",  # main.py:247 StepLR
        "train.step_size": 70,  # main.py:38 --lr_decay_step 70
        "train.gamma": 0.1,  # main.py:39 --lr_decay_ratio 0.1
        "train.step_at": "epoch_end",  # main.py:159 scheduler.step() after the batches of train_epoch
        "train.drop_last": False,  # main.py:265 DataLoader(shuffle=True), no drop_last
        "method.alpha": 0.8,  # README CREMA-D alpha 0.8
        "method.modulation_starts": 0,  # main.py:41 --modulation_starts 0
        "method.modulation_ends": 50,  # main.py:42 --modulation_ends 50; main.py:132 inclusive
    },
    # OGM-GE main.py: the same argparse defaults for every dataset (--dataset KineticSound / VGGSound)
    **{
        ("ogm_ge", ds): {
            "train.epochs": 100,  # main.py:34
            "train.batch_size": 64,  # main.py:33
            "train.optimizer": "sgd",  # main.py:246
            "train.lr": 1e-3,  # main.py:37
            "train.momentum": 0.9,  # main.py:246
            "train.weight_decay": 1e-4,  # main.py:246
            "train.step_size": 70,  # main.py:38
            "train.gamma": 0.1,  # main.py:39
            "train.step_at": "epoch_end",  # main.py:159
            "method.modulation_starts": 0,  # main.py:41
            "method.modulation_ends": 50,  # main.py:42
        }
        for ds in ("kinetics_sounds", "vggsound")
    },
    # fanyunfeng-bit/Modal-Imbalance-PMR main_Prototype_grad.py, bash.sh:222 (CREMA-D, concat,
    # alpha 2.0, --optimizer Adam; bash.sh:217 is the AdaGrad twin, :229 repeats :222)
    ("pmr", "cremad"): {
        "train.epochs": 130,  # bash.sh:222 --epochs 130
        "train.batch_size": 64,  # main_Prototype_grad.py:36 --batch_size default 64
        "train.optimizer": "adam",  # bash.sh:222 --optimizer Adam
        "train.lr": 1e-3,  # bash.sh:222 --learning_rate 0.001
        "train.betas": [0.9, 0.99],  # main_Prototype_grad.py:470 betas=(0.9, 0.99)
        "train.weight_decay": 0.0,  # main_Prototype_grad.py:470 no weight_decay
        "train.schedule": "constant",  # main_Prototype_grad.py:471 scheduler = None
        "train.drop_last": False,  # main_Prototype_grad.py:494 DataLoader(shuffle=True), no drop_last
        "method.alpha": 2.0,  # bash.sh:222 --alpha 2.0
        "method.momentum_coef": 0.0,  # bash.sh:222 --momentum_coef 0.0
        "method.modulation_starts": 0,  # bash.sh:222 --modulation_starts 0
        "method.modulation_ends": 70,  # bash.sh:222 --modulation_ends 70; :156 inclusive
    },
    # Lingy12/AGM_ICCV2023 tasks/CREMAD_task.py, run/CREMAD_main.py, utils/config.py
    ("agm", "cremad"): {
        "train.optimizer": "sgd",  # tasks/CREMAD_task.py:36 optim.SGD
        "train.momentum": 0.9,  # tasks/CREMAD_task.py:36 momentum=0.9
        "train.weight_decay": 1e-4,  # tasks/CREMAD_task.py:36 weight_decay=1e-4
        "train.schedule": "step",  # tasks/CREMAD_task.py:37 StepLR
        "train.step_size": 70,  # utils/config.py:78 --lr_decay_step 70
        "train.gamma": 0.1,  # utils/config.py:77 --lr_decay_ratio 0.1
        "train.step_at": "epoch_end",  # run/CREMAD_main.py:248 scheduler.step() at the end of train
        "train.lr": 1e-4,  # [guess] README:42 (AV-MNIST command) --learning_rate 0.0001
        "train.batch_size": 64,  # [guess] README:42 --batch_size 64
        "train.epochs": 100,  # [guess] README:42 --EPOCHS 100
        "method.window_start": 0,  # utils/config.py:74 --modulation_starts 0
        "method.window_end": 100,  # [paper] whole run (author's answers); utils/config.py:75 says 20
        "method.score_dtype": "float64",  # the run/CREMAD_main.py score chain is Python floats
    },
    # GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py, code/script/mmpareto.sh (defaults only)
    ("mmpareto", "cremad"): {
        "train.epochs": 50,  # code/MMPareto.py:29 --epochs 50
        "train.batch_size": 64,  # code/MMPareto.py:28 --batch_size 64
        "train.optimizer": "sgd",  # code/MMPareto.py:296 optim.SGD
        "train.lr": 0.002,  # code/MMPareto.py:32 --learning_rate 0.002
        "train.momentum": 0.9,  # code/MMPareto.py:296 momentum=0.9
        "train.weight_decay": 1e-4,  # code/MMPareto.py:296 weight_decay=1e-4
        "train.schedule": "constant",  # code/MMPareto.py:301 StepLR created, never stepped
        "method.gamma": 1.5,  # code/MMPareto.py:178 gamma=1.5
    },
    # Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation main.py (README CREMA-D command)
    ("mla", "cremad"): {
        "train.epochs": 100,  # main.py:29 --epochs 100; README:50 --epochs 100
        "train.batch_size": 64,  # main.py:28 --batch_size 64; README:50
        "train.eval_batch_size": 64,  # main.py:816 test DataLoader(batch_size=args.batch_size)
        "train.optimizer": "sgd",  # main.py:749 optim.SGD
        "train.lr": 1e-3,  # main.py:32 --learning_rate 0.001
        "train.momentum": 0.9,  # main.py:749 momentum=0.9
        "train.weight_decay": 1e-4,  # main.py:749 weight_decay=1e-4
        "train.schedule": "step",  # main.py:760 StepLR
        "train.step_size": 70,  # main.py:33 --lr_decay_step 70
        "train.gamma": 0.1,  # main.py:34 --lr_decay_ratio 0.1
        "method.gate": "fixed",  # main.py:55 --dynamic off by default (README command omits it)
    },
    # huacong/ReconBoost train.py, README CREMA-D command
    ("reconboost", "cremad"): {
        "train.batch_size": 64,  # train.py:56 --batch_size 64; README
        "train.optimizer": "sgd",  # train.py:296, :371 optim.SGD
        "train.lr": 0.01,  # train.py:64-65 --m_lr 0.01, --e_lr 0.01
        "train.momentum": 0.9,  # train.py:296 momentum=0.9
        "train.weight_decay": 5e-4,  # train.py:296 weight_decay=5e-4
        "train.schedule": "constant",  # the LR changes only between stages (train.py:445-451)
        "train.drop_last": True,  # train.py:223-227 DataLoader(drop_last=True)
        "method.w1": 5.0,  # train.py:75 --weight1 5.0
        "method.w2": 1.0,  # train.py:76 --weight2 1.0
        "method.alpha_ga": 0.5,  # train.py:77 --alpha 0.5
        "method.beta_init": 1.0,  # train.py:57 --boost_rate 1.0
        "method.epochs_per_stage": 4,  # train.py:59 --epochs_per_stage 4
        "method.correct_epochs": 4,  # train.py:60 --correct_epoch 4
        "method.stage_lr_decay": 0.1,  # train.py:450-451 lr * 0.1
        "method.stage_decay_every": 30,  # train.py:449 stage % 30 == 0 (CREMAD)
        "method.init_from_unimodal": True,  # README --use_pretrain; train.py:180-182
    },
    # njustkmg/NeurIPS25-AUG @966dbf5 train_CREMAD.py, data/crema.json
    ("sustained_boost", "cremad"): {
        "train.epochs": 200,  # data/crema.json:16 epoch_dict 200
        "train.batch_size": 64,  # data/crema.json:17 batch_size 64
        "train.optimizer": "sgd",  # train_CREMAD.py:238 optim.SGD
        "train.lr": 0.01,  # data/crema.json:22 lr 1e-2
        "train.momentum": 0.9,  # data/crema.json:21 momentum 0.9
        "train.weight_decay": 1e-4,  # data/crema.json:23 wc 1e-4
        "train.schedule": "step",  # train_CREMAD.py:239 StepLR
        "train.step_size": 70,  # data/crema.json:30 patience 70
        "train.gamma": 0.1,  # train_CREMAD.py:239 StepLR(..., 0.1)
        "train.step_at": "epoch_start",  # train_CREMAD.py:249 scheduler.step() before training the epoch
        "method.train_added_layers": False,  # train_CREMAD.py:238 optimiser built once; add_layer :261-264 later
        "method.head_init": "xavier",  # train_CREMAD.py:228 model.apply(weight_init)
        "method.weight_net_lr_factor": 0.1,  # train_CREMAD.py:236 w_params lr / 10
    },
    # njustkmg/NeurIPS25-AUG @966dbf5 train_KS.py, data/kinetics_sound.json
    ("sustained_boost", "kinetics_sounds"): {
        "train.epochs": 100,  # data/kinetics_sound.json:16 epoch_dict 100
        "train.batch_size": 64,  # data/kinetics_sound.json:17
        "train.optimizer": "sgd",  # train_KS.py:231 optim.SGD
        "train.lr": 0.01,  # data/kinetics_sound.json:22
        "train.momentum": 0.9,  # data/kinetics_sound.json:21
        "train.weight_decay": 1e-4,  # data/kinetics_sound.json:23 wc
        "train.step_size": 70,  # data/kinetics_sound.json:30 patience 70
        "train.gamma": 0.1,  # train_KS.py:232 StepLR(..., 0.1)
        "train.step_at": "epoch_start",  # train_KS.py:242 scheduler.step() before the epoch
        "method.train_added_layers": False,  # train_KS.py:231 optimiser built once; add_layer :253-257 later
        "method.head_init": "xavier",  # train_KS.py:221 model.apply(weight_init)
    },
    # njustkmg/NeurIPS25-AUG @966dbf5 train_NVGesture.py, data/nvGesture.json
    ("sustained_boost", "nvgesture"): {
        "train.epochs": 100,  # data/nvGesture.json:16 epoch_dict 100
        "train.batch_size": 2,  # data/nvGesture.json:17 batch_size 2
        "train.optimizer": "sgd",  # train_NVGesture.py:275 optim.SGD
        "train.lr": 0.01,  # data/nvGesture.json:22 lr 1e-2
        "train.momentum": 0.9,  # data/nvGesture.json:21
        "train.weight_decay": 1e-4,  # data/nvGesture.json:23 wc
        "train.schedule": "step",  # train_NVGesture.py:278 StepLR
        "train.step_size": 70,  # data/nvGesture.json:30 patience 70
        "train.step_at": "epoch_start",  # train_NVGesture.py:287 scheduler.step() before the epoch
        "method.train_added_layers": False,  # train_NVGesture.py:275 optimiser built once
        "method.head_init": "torch",  # train_NVGesture.py:22 imports weight_init, never applies it
    },
    # GeWu-Lab/MMCosine_ICASSP23 main_CD.py (CREMA-D; README command, concat head)
    ("mmcosine", "cremad"): {
        "train.epochs": 200,  # main_CD.py --epochs 200
        "train.batch_size": 32,  # main_CD.py --batch_size 32
        "train.optimizer": "sgd",  # main_CD.py optim.SGD
        "train.lr": 1e-3,  # main_CD.py --learning_rate 0.001
        "train.momentum": 0.9,  # main_CD.py momentum=0.9
        "train.weight_decay": 1e-4,  # main_CD.py weight_decay=1e-4
        "train.schedule": "step",  # main_CD.py StepLR
        "train.step_size": 100,  # main_CD.py --lr_decay_step 100
        "train.gamma": 0.1,  # main_CD.py --lr_decay_ratio 0.1
        "train.step_at": "epoch_end",  # scheduler.step() after train_epoch
        "method.eval_logits": "linear",  # valid(): fused accuracy from W [a; v] + b
    },
    # GeWu-Lab/BML_TPAMI2024 code/main.py, config.py, scripts/train_opm.sh / train_ogm.sh (KS only)
    **{
        (m, "kinetics_sounds"): {
            "train.epochs": 100,  # config.py epochs = 100
            "train.batch_size": 32,  # config.py batch_size = 32
            "train.optimizer": "adamw",  # main.py:267 AdamW
            "train.lr": 5e-5,  # config.py:26
            "train.weight_decay": 0.01,  # main.py:267
            "train.schedule": "step",  # main.py:268 StepLR
            "train.step_size": 40,  # config.py:28
            "train.gamma": 0.1,  # config.py:29
            "train.step_at": "epoch_end",  # main.py:174 scheduler.step() after the batches
            "method.warmup_epochs": 6,  # main.py:91 warm_up = 1 if epoch <= 5
        }
        for m in ("opm", "ogm_tpami")
    },
    # GeWu-Lab/InfoReg_CVPR2025 @939b2ed main.py argparse defaults (CREMA-D and KS alike)
    **{
        ("inforeg", ds): {
            "train.epochs": 50,  # main.py:34-45 --epochs 50
            "train.batch_size": 64,  # main.py --batch_size 64
            "train.optimizer": "sgd",  # main.py:714 optim.SGD
            "train.lr": 0.002,  # main.py --learning_rate 0.002
            "train.momentum": 0.9,  # main.py:714
            "train.weight_decay": 1e-4,  # main.py:714
            "train.schedule": "step",  # main.py:715 StepLR
            "train.step_size": 30,  # main.py --lr_decay_step 30
            "train.gamma": 0.1,  # main.py --lr_decay_ratio 0.1
            "train.step_at": "epoch_end",  # main.py:601 scheduler.step() after the batches
        }
        for ds in ("cremad", "kinetics_sounds")
    },
    # GeWu-Lab/Diagnosing_Relearning_ECCV2024 @025085e code/ours.py, code/script/ours.sh
    # rAIson-Lab/G2D @95969d8 config.py (CREMA-D student)
    ("g2d", "cremad"): {
        "train.epochs": 300,  # config.py epochs 300
        "train.batch_size": 16,  # config.py:8
        "train.optimizer": "sgd",  # config.py:36-44
        "train.lr": 1e-3,
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.schedule": "step",  # StepLR(200, 0.1)
        "train.step_size": 200,
        "train.gamma": 0.1,
        "method.smp_end": 150,  # config.py:51
    },
    ("dnr", "cremad"): {
        "train.epochs": 90,  # ours.sh --epochs 90
        "train.batch_size": 64,  # ours.sh --batch_size 64
        "train.optimizer": "sgd",  # ours.py:367-368
        "train.lr": 0.002,  # ours.py:38 argparse default
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.schedule": "constant",  # --lr_decay_step parsed, no scheduler built
        "data.val_fraction": 0.1,  # my_train.csv / val.csv: the diagnosis needs a validation split
    },
    # fanyunfeng-bit/DI-MML @83b9b7a main_CFT.py, main_CFT_stage2.py, README
    ("di_mml", "cremad"): {
        "train.epochs": 170,  # 150 stage-1 + 20 stage-2 epochs
        "train.batch_size": 16,  # README --batch_size 16
        "train.optimizer": "sgd",
        "train.lr": 1e-3,  # README, both stages
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.schedule": "step",
        "train.step_size": 70,
        "train.gamma": 0.1,
        "train.step_at": "epoch_end",
        "method.stage2_epochs": 20,  # main_CFT_stage2.py:29
        "method.duc_start_epoch": 20,  # main_CFT.py:93,318
    },
    # GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation @7ed12b0 code/sample_level.py:42-55, 282-298
    ("valuation", "kinetics_sounds"): {
        "train.epochs": 60,
        "train.batch_size": 64,
        "train.optimizer": "adam",
        "train.lr": 5e-5,
        "train.weight_decay": 1e-4,
        "train.schedule": "step",
        "train.step_size": 30,
        "train.gamma": 0.1,
        "train.step_at": "epoch_end",  # after the epoch's valuation pass
    },
    # njustkmg/NeurIPS24-LFM @ad44fa0 Crema_epoch.py, data/crema.json
    ("lfm", "cremad"): {
        "train.epochs": 200,  # data/crema.json epochs 200
        "train.batch_size": 64,  # data/crema.json batch_size 64
        "train.optimizer": "sgd",  # Crema_epoch.py optim.SGD
        "train.lr": 0.01,  # data/crema.json lr 1e-2
        "train.momentum": 0.9,
        "train.weight_decay": 1e-4,
        "train.schedule": "step",
        "train.step_size": 70,  # data/crema.json 70
        "train.gamma": 0.1,
        "train.step_at": "epoch_start",  # Crema_epoch.py:196 scheduler.step() before the epoch
    },
}


def _value(cfg, dotted: str):
    section, _, key = dotted.partition(".")
    if section == "method":
        return cfg.method_params[key]
    return getattr(getattr(cfg, section), key)


@pytest.mark.parametrize("method, dataset", sorted(OFFICIAL), ids=lambda x: x)
def test_official_config_equals_the_official_scripts_settings(method, dataset):
    cfg = resolve_config(dataset, method, {"protocol": "official"})
    table = {**HARNESS, **OFFICIAL[(method, dataset)]}
    got = {key: _value(cfg, key) for key in table}
    assert got == table
    assert cfg.reported_rule == "test-best"
    sources = value_sources(cfg)
    unsourced = [k for k in table if "no source given" in sources[k]]
    assert not unsourced, f"settings without a stated source in the TOML: {unsourced}"


def test_shared_protocol_keeps_a_validation_split_and_the_val_rule():
    cfg = resolve_config("cremad", "ogm_ge", {})
    assert cfg.data.val_fraction == 0.1 and cfg.reported_rule == "val" and cfg.train.amp == "auto"
    assert cfg.method_params["modulation_ends"] == 100  # the E/2 rule on 200 epochs


def test_a_val_slice_under_official_only_on_request():
    cfg = resolve_config("cremad", "ogm_ge", {"protocol": "official", "data.val_fraction": 0.1})
    assert cfg.data.val_fraction == 0.1 and cfg.reported_rule == "test-best"
    assert cfg.sources["data.val_fraction"].startswith("[set]")


def _epochs(dataset: str) -> int:
    return resolve_config(dataset, "joint", {}).train.epochs


@pytest.mark.parametrize(
    "method, key, rule",
    [
        ("ogm_ge", "modulation_ends", lambda e: e // 2),  # the code's 50 of 100
        ("pmr", "modulation_ends", lambda e: round(0.7 * e)),  # bash.sh's 70 of 100
        ("agm", "window_end", lambda e: e),  # the whole run (1-indexed, inclusive)
    ],
)
def test_shared_modulation_window_follows_one_rule_on_every_dataset(method, key, rule):
    from mmbench.benchmark.config import method_preset

    datasets = method_preset(method)["datasets"]
    assert len(datasets) >= 6
    for dataset in datasets:
        cfg = resolve_config(dataset, method, {})
        assert cfg.method_params[key] == rule(cfg.train.epochs), dataset
        assert value_sources(cfg)[f"method.{key}"].startswith("[shared]"), dataset


def test_mla_batch_gate_makes_the_eval_batch_part_of_the_identity():
    from mmbench.benchmark.identity import identity_hash

    def h(gate, bs):
        return identity_hash(resolve_config("mfeat", "mla", {"method.gate": gate, "eval_batch_size": bs}))

    assert h("fixed", 64) == h("fixed", 512)  # speed only for the fixed weights
    assert h("entropy_batch", 64) != h("entropy_batch", 512)  # softmax over the batch axis
    tagged = resolve_config("mfeat", "mla", {"method.gate": "entropy_batch", "eval_batch_size": 64})
    assert "eval_batch_size64" in tagged.tag


def test_every_official_setup_has_a_table_here():
    from mmbench.benchmark.config import method_preset
    from mmbench.benchmark.registry import builtin_method_names

    published = {(m, ds) for m in builtin_method_names() for ds in method_preset(m).get("official", {})}
    assert published == set(OFFICIAL)
