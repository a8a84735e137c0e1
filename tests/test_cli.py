"""The `dacl` command end to end: fit → checkpoint → test/report, and one-line errors."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from dacl.classes import FER2013_CLASSES
from dacl.data.synthetic import split_faces, write_dataset

REPO = Path(__file__).resolve().parents[1]
DACL = shutil.which("dacl", path=str(Path(sys.executable).parent)) or "dacl"


def tiny_config(tmp_path: Path, root: Path, **data) -> Path:
    """exp3's method on a tiny synthetic set: crop 32, one epoch, CPU, 32-bit."""
    config = {
        "trainer": {
            "accelerator": "cpu",
            "precision": "32-true",
            "max_epochs": 1,
            "enable_progress_bar": False,
            "logger": {"init_args": {"save_dir": str(tmp_path / "logs"), "name": "tiny"}},
        },
        "model": {"in_chans": 1},
        "data": {"root": str(root), "crop": 32, "resize": 36, "batch_size": 16, **data},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dacl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The installed ``dacl`` command as a process: exit codes and stderr as users see them."""
    return subprocess.run([DACL, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """``run(*args)``: ``dacl`` in this process (``dacl.cli.main``), with its exit status and
    output as a process would give them."""
    from dacl.cli import main

    monkeypatch.chdir(tmp_path)  # whatever a command writes to its folder stays out of the repo
    monkeypatch.setattr(sys, "argv", ["dacl"])  # LightningCLI reads args, not pytest's argv

    def call(*args: str) -> SimpleNamespace:
        for handler in logging.getLogger("dacl").handlers:  # main() made it for an earlier test
            handler.stream = sys.stderr
        try:
            main(list(args))
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return call


@pytest.fixture(scope="module")
def fitted(synthetic_dataset, tmp_path_factory) -> Path:
    """One `dacl fit` of the tiny config on the folders layout; its config file."""
    from dacl.cli import main

    config = tiny_config(tmp_path_factory.mktemp("fitted"), synthetic_dataset("folders"))
    main(["fit", "--config", str(config)])
    return config


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["train_test", "csv"])
def test_fit_then_test_best_checkpoint_in_every_layout(synthetic_dataset, tmp_path, layout, run):
    config = tiny_config(tmp_path, synthetic_dataset(layout))
    fit = run("fit", "--config", str(config))
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoints = list((tmp_path / "logs" / "tiny" / "version_0" / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt", "best-epoch=00.ckpt"}
    test = run("test", "--config", str(config), "--ckpt_path", "best")
    assert test.returncode == 0, test.stderr[-3000:]
    for metric in ("test/acc", "test/balanced_acc", "test/f1_macro", "test/recall_disgust"):
        assert metric in test.stdout, metric
    assert "best-epoch=00.ckpt" in test.stderr + test.stdout


def test_the_fitted_run_has_its_checkpoints_and_tests_with_best(fitted, run):
    logs = fitted.parent / "logs" / "tiny" / "version_0"
    assert {p.name for p in (logs / "checkpoints").glob("*.ckpt")} >= {
        "last.ckpt",
        "best-epoch=00.ckpt",
    }
    test = run("test", "--config", str(fitted), "--ckpt_path", "best")
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/balanced_acc" in test.stdout and "best-epoch=00.ckpt" in test.stderr


def test_a_run_shows_lightnings_info_lines_but_not_its_cloud_logger_tip(fitted, run, caplog):
    caplog.set_level(logging.INFO)
    result = run("validate", "--config", str(fitted), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [record.getMessage() for record in caplog.records]
    assert any("GPU available" in line for line in lines)
    assert not [line for line in lines if "litlogger" in line]


def test_an_accelerator_this_machine_lacks_is_one_line(fitted, run):
    # GPU 99 exists nowhere: without CUDA Lightning refuses the accelerator, with it the index
    result = run(
        "validate", "--config", str(fitted), "--trainer.accelerator", "cuda",
        "--trainer.devices", "[99]",
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("dacl: error")]
    reason = (
        "You requested gpu: [99]" if torch.cuda.is_available() else "`CUDAAccelerator` can not run"
    )
    assert line.startswith(f"dacl: error: trainer options: {reason}"), line
    assert "Traceback" not in result.stderr


def test_report_writes_pictures_and_metrics(fitted, run):
    out = fitted.parent / "report"
    versions = sorted((fitted.parent / "logs" / "tiny").iterdir())
    report = run("report", "--config", str(fitted), "--ckpt_path", "last", "--out", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert sum(map(sum, metrics["confusion_matrix"])) == 21  # every val image, once
    assert {"confusion.png", "report.md", "samples_wrong.png"} <= {p.name for p in out.iterdir()}
    assert "report written to" in report.stdout
    # an evaluation, not a run: no new logger version, no config.yaml in the working folder
    assert sorted((fitted.parent / "logs" / "tiny").iterdir()) == versions
    assert not Path("config.yaml").exists()


def test_report_has_help_and_print_config_like_every_subcommand(fitted, run):
    shown = run("report", "--config", str(fitted), "--split", "test", "--print_config")
    assert shown.returncode == 0
    config = yaml.safe_load(shown.stdout)
    assert config["split"] == "test" and config["data"]["crop"] == 32
    assert config["trainer"]["precision"] == "32-true"
    assert "--per_class" in run("report", "--help").stdout


def test_predict_split_writes_one_row_per_test_image(fitted, run):
    result = run("predict_split", "--config", str(fitted), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    (csv,) = (fitted.parent / "logs" / "tiny").glob("version_*/predictions.csv")
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("file,label,prediction,p_angry")
    assert len(rows) == 1 + 21 and all("PrivateTest_" in r for r in rows[1:])


def test_best_without_a_run_is_a_clear_error(synthetic_dataset, tmp_path, run):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    result = run("test", "--config", str(config), "--ckpt_path", "best")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("dacl: error: --ckpt_path best")


def _bad_class(root: Path) -> None:
    (root / "train" / "happy").rename(root / "train" / "joyful")


def _empty_class(root: Path) -> None:
    for f in (root / "val" / "sad").iterdir():
        f.unlink()


def _bad_csv_label(root: Path) -> None:
    csv = root / "fer2013.csv"
    lines = csv.read_text().splitlines()
    lines[3] = "9" + lines[3][1:]
    csv.write_text("\n".join(lines) + "\n")


BAD_INPUTS = [
    ("missing_root", None, "fit", "does not exist"),
    ("no_layout", "empty", "fit", "no FER2013 layout"),
    ("missing_split", "train_test", "fit", "'val'"),
    ("bad_class", "folders", "fit", "joyful"),
    ("empty_class", "folders", "fit", "sad"),
    ("bad_csv_label", "csv", "fit", "fer2013.csv"),
]


@pytest.mark.parametrize(("case", "layout", "command", "needle"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(
    fresh_dataset, tmp_path, case, layout, command, needle, run
):
    if layout is None:
        root = tmp_path / "nowhere"
    elif layout == "empty":
        root = tmp_path / "empty"
        (root / "photos").mkdir(parents=True)
    elif case == "missing_split":  # the common download without PublicTest_ files: no val
        root = fresh_dataset("train_test", n_val=0)
    else:
        root = fresh_dataset(layout)
        {"bad_class": _bad_class, "empty_class": _empty_class, "bad_csv_label": _bad_csv_label}[
            case
        ](root)
    args = [command, "--config", str(tiny_config(tmp_path, root))]

    result = run(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dacl: error: ") and needle in last, last


def test_exp4_without_weights_says_which_file(synthetic_dataset, tmp_path, run):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    result = run(
        "fit", "--config", str(REPO / "experiments" / "exp4.yaml"), "--config", str(config),
        "--trainer.fast_dev_run", "1",
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "resnet18_msceleb.pth' not found" in last and "MS-Celeb-1M" in last
    assert "--model.pretrained" in last


def test_a_fit_that_fails_before_its_first_step_leaves_no_run_folder(
    synthetic_dataset, tmp_path, run
):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    result = run("fit", "--config", str(config), "--model.pretrained", str(tmp_path / "no.pth"))
    assert result.returncode == 2 and "no.pth" in result.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "logs").rglob("version_*"))


def test_broken_checkpoint_file_is_one_line(synthetic_dataset, tmp_path, run):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 truncated")
    result = run("test", "--config", str(config), "--ckpt_path", str(tmp_path / "cut.ckpt"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cut.ckpt' is unreadable, truncated?" in result.stderr.strip().splitlines()[-1]


def test_a_checkpoint_not_written_by_dacl_is_one_line(synthetic_dataset, tmp_path, run):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    for command in ("test", "report"):
        result = run(command, "--config", str(config), "--ckpt_path", str(tmp_path / "other.ckpt"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert "other.ckpt' is not a dacl checkpoint (no model hyper-parameters)" in last


@pytest.mark.slow
def test_missing_checkpoint_file_is_one_line_from_the_command(synthetic_dataset, tmp_path):
    """The installed command, as a process: exit status 2 and one line, no traceback."""
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    for command in ("test", "report"):
        result = dacl(command, "--config", str(config), "--ckpt_path", "nope.ckpt")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last == "dacl: error: --ckpt_path 'nope.ckpt': no such checkpoint file; " + (
            "pass best, last, pretrained or an existing .ckpt"
        )


def test_lightnings_switches_leave_no_checkpoint(synthetic_dataset, tmp_path, run):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    for switch in (("--trainer.enable_checkpointing", "false"), ("--trainer.fast_dev_run", "true")):
        fit = run("fit", "--config", str(config), *switch)
        assert fit.returncode == 0, fit.stderr[-2000:]
    assert not list(tmp_path.rglob("*.ckpt")), list(tmp_path.rglob("*.ckpt"))
    assert {p.name for p in tmp_path.iterdir()} <= {"tiny.yaml", "logs"}  # the run's folder


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        # an unknown option: the closest real one
        ("--model.lamda", "0.1", ["--model.lamda", "did you mean --model.lam?"]),
        # a value outside the choices: the choices
        ("--model.variant", "dacl_fixd", ["model.variant", "dacl_fixd", "'dacl_fixed'"]),
        # a grouped data option given flat, as before the grouping: where it went
        ("--data.label_mode", "crossentropy", ["data.label_mode is now data.labels.label_mode"]),
        ("--data.cache_dir", "x", ["data.cache_dir is now data.faces.cache_dir"]),
        # a retired one: what to do
        ("--data.pipeline", "reference", ["data.pipeline is no longer an option", "delete it"]),
        # a misspelt grouped one: the closest real one
        ("--data.labels.num_clases", "8", ["did you mean --data.labels.num_classes?"]),
        # a seed NumPy cannot take (was: Lightning's ValueError traceback)
        ("--seed_everything", "-1", ["seed_everything must be in 0..4294967295, got -1"]),
    ],
)
def test_a_bad_option_is_one_line_saying_what_was_expected(
    synthetic_dataset, tmp_path, run, option, value, expected
):
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    result = run("fit", "--config", str(config), option, value)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert all(part in line for part in expected), line


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"pipeline": "reference"}, "data.pipeline is no longer an option"),
        ({"num_workers": 4}, "data.num_workers is no longer an option"),
        ({"balanced": True}, "data.balanced is now data.labels.balanced"),
    ],
)
def test_an_old_data_option_in_a_config_is_one_line(synthetic_dataset, tmp_path, run, data, line):
    config = tiny_config(tmp_path, synthetic_dataset("folders"), **data)
    result = run("fit", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (got,) = result.stderr.strip().splitlines()
    assert got.startswith(f"dacl: error: {line}"), got


def test_grouped_data_options_on_the_command_line(synthetic_dataset, tmp_path):
    from dacl.cli import build_cli

    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    cli = build_cli(["--config", str(config), "--data.labels.balanced", "true",
                     "--data.faces.cache_dir", str(tmp_path / "c")])  # fmt: skip
    data = cli.datamodule
    assert data.label_options.balanced and data.face_options.cache_dir == str(tmp_path / "c")
    assert data.hparams["balanced"] is True and "labels" not in data.hparams  # saved flat
    assert cli.model.hparams.image_size == 32 and cli.model.hparams.target_loss == "soft"
    # data.labels.label_mode sets model.target_loss, as data.crop sets model.image_size
    ferplus = write_dataset(tmp_path / "ferplus", "ferplus", 14, 7, 7)
    config = tiny_config(tmp_path, ferplus, dataset="ferplus")
    cli = build_cli(["--config", str(config), "--data.labels.label_mode", "multi_target"])
    assert cli.model.hparams.target_loss == "any"


def test_an_old_checkpoint_with_flat_retired_data_options_still_loads(fitted, run, tmp_path):
    """Checkpoints written before the data options were grouped and the PIL path retired
    carry ``pipeline`` and ``num_workers`` among their flat data hyper-parameters."""
    from dacl import Predictor

    last = fitted.parent / "logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    for pipeline in ("fast", "reference"):
        ckpt["datamodule_hyper_parameters"].update(pipeline=pipeline, num_workers=2)
        old = tmp_path / f"old_{pipeline}.ckpt"
        torch.save(ckpt, old)
        test = run("test", "--config", str(fitted), "--ckpt_path", str(old))
        assert test.returncode == 0, test.stderr[-3000:]
        assert "test/balanced_acc" in test.stdout
        assert Predictor.from_checkpoint(old, device="cpu").crop == 32
    assert "trained with data.pipeline reference" in test.stderr


def test_a_checkpoint_of_another_image_size_is_one_line(fitted, run):
    result = run("test", "--config", str(fitted), "--ckpt_path", "last", "--data.crop", "28")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "was trained on 32 px crops, but data.crop is 28" in last
    assert "--data.crop 32 --data.resize 36" in last


def test_the_top_level_help_names_every_command(run):
    from dacl.__main__ import PROGRAMS, USAGE
    from dacl.cli import DACLCLI

    for command in [*DACLCLI.subcommands(), *PROGRAMS]:
        assert f"\n  {command} " in USAGE, command
    assert run("predict_split", "--help").returncode == 0


def test_best_checkpoint_rebuilds_the_trained_model_not_the_config(
    synthetic_dataset, tmp_path, run
):
    """Trained with --model.variant center (no CE-Unit), tested with the config alone."""
    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    fit = run("fit", "--config", str(config), "--model.variant", "center")
    assert fit.returncode == 0, fit.stderr[-2000:]
    test = run("test", "--config", str(config), "--ckpt_path", "best")
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test/balanced_acc" in test.stdout


def test_fer2013_checkpoint_tested_on_rafdb_reports_the_shared_classes(fitted, tmp_path, run):
    raf = write_dataset(tmp_path / "raf", "rafdb", 28, 0, 21)
    test = run(
        "test", "--config", str(fitted), "--ckpt_path", "best",
        "--data.dataset", "rafdb", "--data.root", str(raf),
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    for name in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"):
        assert f"test/recall_{name}" in test.stdout, name
    # faces decoded as the checkpoint was trained: gray, FER2013's statistics
    assert "rafdb at" in test.stderr and "labels mapped" not in test.stderr


@pytest.mark.slow
def test_rafdb_ids_reach_the_outputs_by_name_through_fit_and_predict(tmp_path, run):
    """A RAF-DB fixture (ids 1-7 in its label file) fitted, tested and predicted: every row of
    predictions.csv names the class the face was drawn as."""
    raf = write_dataset(tmp_path / "raf", "rafdb", 42, 0, 21)
    config = tiny_config(tmp_path, raf, dataset="rafdb")
    fit = run("fit", "--config", str(config), "--model.in_chans", "3", "--trainer.max_steps", "2")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "images carved from train" in fit.stderr
    test = run("test", "--config", str(config), "--ckpt_path", "last")
    assert test.returncode == 0 and "test/recall_surprise" in test.stdout
    assert run("predict_split", "--config", str(config), "--ckpt_path", "last").returncode == 0
    (csv,) = (tmp_path / "logs" / "tiny").glob("version_*/predictions.csv")
    rows = [r.split(",") for r in csv.read_text().splitlines()[1:]]
    drawn = split_faces(21, 0, "test")[1]
    assert [r[0] for r in rows] == [f"aligned/test_{i:05d}_aligned.jpg" for i in range(1, 22)]
    assert [r[1] for r in rows] == [FER2013_CLASSES[y] for y in drawn]
    # the trained model on a photo: RGB faces at RAF-DB's size, as it was trained
    from dacl.predictor import Predictor

    (ckpt,) = (tmp_path / "logs" / "tiny").glob("version_0/checkpoints/last.ckpt")
    predictor = Predictor.from_checkpoint(ckpt)
    photo = raf / "Image" / "aligned" / "test_00001_aligned.jpg"
    assert predictor.faces([photo]).shape == (1, 3, 100, 100)
    assert predictor(photo).probs.shape == (1, 7)


@pytest.mark.slow
def test_rafdb_recipe_runs_two_steps_on_cpu(tmp_path, run):
    raf = write_dataset(tmp_path / "raf", "rafdb", 42, 0, 14)
    fit = run(
        "fit", "--config", str(REPO / "experiments" / "rafdb.yaml"), "--data.root", str(raf),
        "--model.pretrained", "null", "--trainer.accelerator", "cpu",
        "--trainer.precision", "32-true", "--trainer.max_steps", "2", "--data.batch_size", "4",
        "--trainer.limit_val_batches", "1", "--trainer.logger.init_args.save_dir", str(tmp_path),
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    (ckpt,) = (tmp_path / "rafdb").glob("version_0/checkpoints/last.ckpt")
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert hparams["global_step"] == 2
    assert hparams["hyper_parameters"]["class_names"] == list(FER2013_CLASSES)
    assert hparams["datamodule_hyper_parameters"]["channels"] == 3


def test_rgb_data_with_the_gray_stem_is_one_line(tmp_path, run):
    raf = write_dataset(tmp_path / "raf", "rafdb", 14, 0, 0)
    result = run("fit", "--config", str(tiny_config(tmp_path, raf, dataset="rafdb")))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "dacl: error: model.in_chans 1 (the gray stem) takes gray faces, but rafdb is RGB: "
        "set model.in_chans: 3 (or data.faces.channels: 1 to read it gray)"
    )


def test_configuring_in_python_prints_nothing(monkeypatch, caplog, capsys, recwarn):
    """``dacl ablate`` and other callers build the config in-process while their own command
    is in ``sys.argv``: no seed, accelerator or argv lines may reach their console."""
    from dacl.cli import build_cli

    monkeypatch.setattr(sys, "argv", ["dacl", "ablate", "--seeds", "0"])
    caplog.set_level(logging.INFO)
    level = logging.getLogger("pytorch_lightning").level
    cli = build_cli(["--config", str(REPO / "experiments" / "cpu.yaml"), "--seed_everything", "3"])
    assert cli.datamodule.hparams.crop == 44
    assert not caplog.records and capsys.readouterr() == ("", "")
    assert not [w for w in recwarn if "command line arguments" in str(w.message)]
    assert logging.getLogger("pytorch_lightning").level == level  # restored


# -- the CLI's steps as plain functions ----------------------------------------------------


def _checkpoint(path: Path, image_size: int = 48, data: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = {"image_size": image_size, "variant": "dacl"}
    torch.save({"state_dict": {}, "hyper_parameters": hparams, **(data or {})}, path)
    return path


def test_best_and_last_resolve_to_the_newest_run_that_has_one(tmp_path):
    from dacl.cli import resolve_checkpoint

    best = _checkpoint(tmp_path / "version_2" / "checkpoints" / "best-epoch=01.ckpt")
    last = _checkpoint(tmp_path / "version_10" / "checkpoints" / "last.ckpt")
    (tmp_path / "version_11" / "checkpoints").mkdir(parents=True)  # a run that saved nothing
    assert resolve_checkpoint("best", tmp_path) == str(best)  # version_10 has no best
    assert resolve_checkpoint("last", tmp_path) == str(last)  # 10 after 2: by number
    assert resolve_checkpoint(str(best), tmp_path) == str(best)
    assert resolve_checkpoint(None, tmp_path) is None


@pytest.mark.parametrize(
    ("ckpt_path", "root", "message"),
    [
        ("best", None, "needs the TensorBoard logger"),
        ("last", "empty", r"no last\.ckpt under"),
        ("missing.ckpt", "empty", "no such checkpoint file"),
    ],
)
def test_a_checkpoint_that_cannot_be_resolved_is_one_error(tmp_path, ckpt_path, root, message):
    from dacl.cli import resolve_checkpoint
    from dacl.errors import DACLError

    path = str(tmp_path / ckpt_path) if ckpt_path.endswith(".ckpt") else ckpt_path
    with pytest.raises(DACLError, match=message):
        resolve_checkpoint(path, root and tmp_path)


def test_read_checkpoint_gives_the_trained_data_and_checks_the_crop(tmp_path):
    from dacl.cli import read_checkpoint
    from dacl.errors import DACLError

    data = {"datamodule_hyper_parameters": {"crop": 48, "resize": 56, "channels": 1}}
    path = _checkpoint(tmp_path / "a.ckpt", image_size=48, data=data)
    assert read_checkpoint(str(path), 48) == data["datamodule_hyper_parameters"]
    with pytest.raises(DACLError, match=r"trained on 48 px.*--data\.crop 48 --data\.resize 56"):
        read_checkpoint(str(path), 44)
    assert read_checkpoint(str(_checkpoint(tmp_path / "b.ckpt")), 48) == {}
    torch.save({"state_dict": {}}, tmp_path / "c.ckpt")
    with pytest.raises(DACLError, match="not a dacl checkpoint"):
        read_checkpoint(str(tmp_path / "c.ckpt"), 48)


def _data(**options) -> dict:
    """``data`` options as the parser gives them: a FER2013 folder, nothing else set; grouped
    options given flat go to their group."""
    from dacl.data.options import GROUP_OF

    data = {"dataset": "fer2013", "root": "nowhere", "synthetic": False,
            "labels": {"num_classes": 7, "class_map": None, "classes": None},
            "faces": dict.fromkeys(("channels", "mean", "std"))}  # fmt: skip
    for key, value in options.items():
        (data[GROUP_OF[key]] if key in GROUP_OF else data)[key] = value
    return data


def test_a_new_model_gets_the_datas_classes():
    from dacl.cli import match_data

    model = {"in_chans": 1, "class_names": None}
    assert match_data(_data(), model, False) == ({}, list(FER2013_CLASSES))
    assert match_data(_data(classes=["happy", "sad"]), model, False) == ({}, ["happy", "sad"])


def test_a_checkpoints_model_keeps_its_classes_and_its_datas_format():
    from dacl.cli import match_data

    model = {"in_chans": 1, "class_names": ["happy", "sad"]}
    trained = {"channels": 1, "mean": [0.5], "std": [0.25], "crop": 48}
    changes, names = match_data(_data(dataset="rafdb"), model, True, trained)
    assert names == ["happy", "sad"]
    assert changes == {"classes": names, "channels": 1, "mean": [0.5], "std": [0.25]}
    # options given on the command line win over the checkpoint's
    changes, _ = match_data(_data(mean=[0.4], std=[0.2]), model, True, trained)
    assert changes == {"classes": names, "channels": 1}


def test_rgb_data_for_the_gray_stem_is_one_error():
    from dacl.cli import match_data
    from dacl.errors import DACLError

    model = {"in_chans": 1, "class_names": ["happy"]}
    with pytest.raises(DACLError, match=r"model\.in_chans 1 .* rafdb is RGB"):
        match_data(_data(dataset="rafdb"), model, True)
    assert match_data(_data(dataset="rafdb", channels=1), model, True)[1] == ["happy"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["frobnicate"], "unknown command 'frobnicate'; the commands: {commands} (dacl --help)"),
        (["predct"], "unknown command 'predct' (did you mean predict?); the commands: {commands}"),
        (
            ["predict", "--fcaes", "detect", "face.png"],
            "dacl predict: unrecognized arguments: --fcaes (did you mean --faces?); "
            "see dacl predict --help",
        ),
        (
            ["export", "--formt", "onnx"],
            "dacl export: unrecognized arguments: --formt onnx (did you mean --format?); "
            "see dacl export --help",
        ),
        (["demo", "--prot", "80"], "dacl demo: unrecognized arguments: --prot 80 (did you mean"),
        # a positional given as an option: how to give it (was: "did you mean --soft?")
        (
            ["ensemble", "--soft", "a.npz", "--out", "t.npz"],
            "dacl ensemble: unrecognized arguments: --soft (soft is positional: give its values "
            "without --soft)",
        ),
    ],
)
def test_a_typo_outside_fit_is_one_line_with_the_closest_name(monkeypatch, capsys, args, line):
    """Every command is named when the command is unknown; a misspelt option of predict,
    export or demo gets the closest real one, as fit's do."""
    from dacl.__main__ import PROGRAMS, main
    from dacl.cli import DACLCLI

    commands = ", ".join([*DACLCLI.subcommands(), *PROGRAMS])
    assert len(commands.split(", ")) == 10
    monkeypatch.setattr(sys, "argv", ["dacl", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2
    (got,) = capsys.readouterr().err.strip().splitlines()
    assert got.startswith("dacl: error: " + line.format(commands=commands)), got
