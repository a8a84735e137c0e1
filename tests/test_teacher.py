"""Soft targets and their ensemble (dacl.teacher): the teacher file of distillation."""

import numpy as np
import pytest

from dacl import DACLError, FER2013DataModule
from dacl.data import LabelOptions
from dacl.data.options import grouped
from dacl.predictor import Predictor
from dacl.teacher import SoftTargets, ensemble, main, select, soft_targets

NAMES = ("a", "b")


def _soft(val_probs, val_labels=(0, 0, 1, 1), keys=("v0", "v1", "v2", "v3")) -> SoftTargets:
    train = np.array([[0.9, 0.1], [0.2, 0.8]])
    return SoftTargets(
        NAMES,
        {"train": np.array(["t0", "t1"]), "val": np.array(keys)},
        {"train": np.array([0, 1]), "val": np.array(val_labels)},
        {"train": train, "val": np.array(val_probs, dtype=np.float64)},
    )


def test_accuracy_and_balanced_accuracy_by_hand():
    # predictions a, b, b, b for labels a, a, b, b: acc 3/4; recalls 1/2 and 1 → balanced 3/4
    soft = _soft([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]], val_labels=(0, 0, 1, 1))
    assert soft.accuracy() == pytest.approx((0.75, 0.75))
    # predictions b, b, b, b for labels a, b, b, b: acc 3/4, recalls 0 and 1 → balanced 1/2
    soft = _soft([[0.4, 0.6]] * 4, val_labels=(0, 1, 1, 1))
    assert soft.accuracy() == pytest.approx((0.75, 0.5))


def test_a_file_round_trips_in_float16_and_nothing_is_left_on_failure(tmp_path):
    soft = _soft([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]])
    path = soft.save(tmp_path / "soft.npz")
    back = SoftTargets.load(path)
    assert back.class_names == NAMES and back.probs["val"].dtype == np.float16
    assert np.allclose(back.probs["val"], soft.probs["val"], atol=1e-3)
    assert list(back.keys["val"]) == ["v0", "v1", "v2", "v3"]
    assert [p.name for p in tmp_path.iterdir()] == ["soft.npz"]  # no temporary file left


def test_ensemble_averages_and_refuses_other_classes_or_shuffled_keys():
    one = _soft([[1.0, 0.0]] * 4)
    two = _soft([[0.0, 1.0]] * 4)
    assert np.allclose(ensemble([one, two], ["1", "2"]).probs["val"], 0.5)
    shuffled = _soft([[0.0, 1.0]] * 4, keys=("v1", "v0", "v2", "v3"))
    with pytest.raises(DACLError, match="'2' covers other val faces"):
        ensemble([one, shuffled], ["1", "2"])
    other = SoftTargets(("b", "a"), one.keys, one.labels, one.probs)
    with pytest.raises(DACLError, match="classes"):
        ensemble([one, other], ["1", "2"])


def test_greedy_selection_adds_a_member_only_while_it_helps():
    labels = (0, 0, 1, 1)
    good = _soft([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.2, 0.8]], labels)  # balanced 0.75
    # alone it calls every face a (balanced 0.5); averaged with good it puts face 1 right
    fixer = _soft([[0.7, 0.3], [0.7, 0.3], [0.55, 0.45], [0.55, 0.45]], labels)
    bad = _soft([[0.1, 0.9]] * 4, labels)
    assert select([bad, good, fixer], ["bad", "good", "fixer"]) == [1, 2]


def test_a_damaged_or_foreign_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DACLError, match="cannot be read"):
        SoftTargets.load(broken)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DACLError, match="lack class_names"):
        SoftTargets.load(tmp_path / "other.npz")


def test_soft_targets_of_a_checkpoint_cover_train_and_val_in_dataset_order(
    tiny_checkpoint, tmp_path, capsys
):
    ckpt, _, _, root = tiny_checkpoint
    data = FER2013DataModule(str(root), crop=32, resize=36)
    soft = soft_targets(Predictor.load(ckpt, tta="crops"), data)
    assert list(soft.keys["val"]) == data.names("val")
    assert np.array_equal(soft.labels["train"], data.labels("train").numpy())
    assert np.allclose(soft.probs["train"].sum(1), 1, atol=1e-5)
    # ten-crop: the mean of the views' softmax, as the predictor answers with tta="crops"
    direct = Predictor.load(ckpt, tta="crops").predict_faces(data.faces("val", [0, 1])).probs
    assert np.allclose(soft.probs["val"][:2], direct.numpy(), atol=1e-6)
    soft.save(tmp_path / "one.npz")
    main([str(tmp_path / "one.npz"), str(tmp_path / "one.npz"), "--out", str(tmp_path / "t.npz")])
    assert "teacher of 2 written" in capsys.readouterr().out
    assert np.allclose(SoftTargets.load(tmp_path / "t.npz").probs["val"], soft.probs["val"], 1e-3)


def _teacher_for(data: FER2013DataModule, path, **change) -> str:
    """A teacher file for ``data``'s train and val faces (uniform probabilities), changed."""
    data.setup("fit")
    k = len(data.class_names)
    keys = {s: np.array(data.names(s)) for s in ("train", "val")}
    labels = {s: data.labels(s).numpy() for s in ("train", "val")}
    probs = {s: np.full((len(keys[s]), k), 1 / k) for s in ("train", "val")}
    fields = {"class_names": data.class_names, "keys": keys, "labels": labels, "probs": probs}
    SoftTargets(**{**fields, **change}).save(path)
    return str(path)


def test_training_batches_carry_the_teacher_and_a_foreign_teacher_is_one_line(
    synthetic_dataset, tmp_path
):
    root = str(synthetic_dataset("folders"))
    plain = FER2013DataModule(root, crop=32, resize=36, batch_size=8)
    good = _teacher_for(plain, tmp_path / "good.npz")
    data = FER2013DataModule(root, crop=32, resize=36, batch_size=8, teacher=good)
    data.setup("fit")
    carried = data.datasets["train"].tensors[2]
    assert carried.shape == (len(data.names("train")), 7)
    assert np.allclose(carried.numpy(), 1 / 7, atol=1e-3)
    assert len(data.datasets["val"].tensors) == 2  # evaluation: no teacher
    names = list(plain.names("train"))
    shuffled = {"train": np.array(names[1:] + names[:1]), "val": np.array(plain.names("val"))}
    cases = {
        "shuffled": ({"keys": shuffled}, "other train faces than the data, or in another order"),
        "classes": ({"class_names": tuple(reversed(plain.class_names))}, "has classes"),
    }
    for name, (change, message) in cases.items():
        bad = _teacher_for(plain, tmp_path / f"{name}.npz", **change)
        with pytest.raises(DACLError, match=message):
            FER2013DataModule(root, crop=32, resize=36, teacher=bad).setup("fit")
    with pytest.raises(DACLError, match="hard labels"):
        FER2013DataModule(root, teacher=good, labels=LabelOptions(label_mode="crossentropy"))


def test_a_distilled_fit_runs_and_a_teacher_without_a_weight_is_refused(
    synthetic_dataset, tmp_path
):
    import pytorch_lightning as pl

    from dacl import DACLModule

    root = str(synthetic_dataset("folders"))
    teacher = _teacher_for(FER2013DataModule(root), tmp_path / "t.npz")
    data = FER2013DataModule(root, crop=32, resize=36, batch_size=16, teacher=teacher)

    def fit(distill):
        module = DACLModule(image_size=32, in_chans=1, distill=distill)
        trainer = pl.Trainer(
            accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(module, data)
        return trainer.callback_metrics

    assert "train/loss_kd" in fit({"weight": 0.5, "temperature": 2.0})
    with pytest.raises(DACLError, match=r"model\.distill\.weight is 0"):
        fit(None)


def test_a_typo_in_dacl_ensemble_is_one_line_with_the_closest_option(tmp_path):
    with pytest.raises(DACLError, match=r"--outt.*did you mean --out\?"):
        main(["a.npz", "--outt", "t.npz"])
    with pytest.raises(DACLError, match="needs soft-target files or --models"):
        main(["--out", "t.npz"])
    # the data module's options as fit takes them: grouped, and the old ones one line
    for old, line in (
        (["--data.label_mode", "crossentropy"], "data.label_mode is now data.labels.label_mode"),
        (["--data.num_workers", "2"], "data.num_workers is no longer an option"),
        (["--data.labels.label_mod", "x"], "data.labels has no option label_mod"),
        (["--data.labels.num_classes", "9"], "data.labels: .*num_classes"),
    ):
        with pytest.raises(DACLError, match=line):
            main(["--models", "pretrained", "--out", "t.npz", *old])
    # an --out that cannot be written: one line before any model is loaded or run
    (tmp_path / "file").write_text("")
    with pytest.raises(DACLError, match=r"--out folder '\S*file' is not writable \(it is a file"):
        main(["--models", "nosuch.ckpt", "--out", str(tmp_path / "file" / "t.npz")])
    # an --out that is one of the members: refused before any work (it would be replaced)
    with pytest.raises(DACLError, match=r"--out '\S*member\.npz' is one of the members' files"):
        main([str(tmp_path / "member.npz"), "--out", str(tmp_path / "." / "member.npz")])
    # typed as fit's command line types them
    data = grouped({"root": "x", "labels": {"num_classes": "8", "balanced": "true"}})
    assert data == {"root": "x", "labels": LabelOptions(num_classes=8, balanced=True)}
