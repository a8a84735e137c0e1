"""`dacl ablate`: configs x seeds, results table, skip finished runs, resume, failures.

The end-to-end tests really train: a tiny config (32 px crops, 2 training batches, 1 epoch) x
two seeds on synthetic faces without a test split (one `dacl fit` subprocess
per run), re-run (all skipped), then one run made partial and resumed for a second epoch; and
one run on faces with a test split (`dacl fit`, then `dacl test` of the best checkpoint). Most
of their time is the subprocesses' imports. Failure handling and the resume command are also
checked with the subprocess replaced by a fake, the metrics-file reading on logged metrics, the
paired and Welch tests (dacl.analysis) on hand-computed cases, and `--analyze` (attention,
compactness) on untrained tiny models.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest
import torch
import yaml
from filelock import FileLock

from dacl import FER2013_CLASSES, DACLError, DACLModule, FER2013DataModule, ablate, analysis, viz
from dacl.callbacks import CSVTensorBoardLogger
from dacl.data import LabelOptions
from dacl.data.synthetic import write_dataset
from dacl.teacher import SoftTargets

TINY = {
    "trainer": {
        "accelerator": "cpu",
        "precision": "32-true",
        "max_epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 1,
        "limit_test_batches": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [
            {
                "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                "init_args": {
                    "monitor": "val/balanced_acc",
                    "mode": "max",
                    "save_top_k": 1,
                    "save_last": True,
                    "filename": "best-{epoch:02d}",
                },
            }
        ],
    },
    "data": {"crop": 32, "resize": 36, "batch_size": 32},
}


def _config(folder: Path, variant: str) -> Path:
    cfg = {**TINY, "model": {"variant": variant, "in_chans": 1}}
    path = folder / f"tiny_{variant}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _summary_rows(md: str) -> dict[str, list[str]]:
    """config → cells of the per-config table in results.md (the first table)."""
    table = md.split("\n## ")[0]  # before the paired comparison and the runs
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows[cells[0].strip("`")] = cells
    return rows


def _parse(cell: str) -> tuple[float, float | None]:
    m = re.fullmatch(r"([0-9.]+) ± ([0-9.]+|–)", cell)
    assert m, cell
    return float(m.group(1)), None if m.group(2) == "–" else float(m.group(2))


@pytest.mark.slow
def test_ablate_end_to_end_then_skips_finished_runs(tmp_path, capsys):
    # No test split: `--test auto` (the default) tests nothing, and each run is one subprocess.
    data = write_dataset(tmp_path / "data", "folders", n_train=70, n_val=21, n_test=0, seed=0)
    # One config, two seeds (several configs are summarised in the tests with fake runs below).
    configs = [str(_config(tmp_path, "dacl"))]
    out = tmp_path / "ablation"
    argv = ["--configs", *configs, "--seeds", "0", "1", "--out", str(out), "--quiet"]
    argv += ["--data.root", str(data)]
    ablate.main(argv)

    for name in ("results.md", "results.json", "commands.sh"):
        assert (out / name).is_file(), name
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert sorted(r["name"] for r in runs) == ["tiny_dacl_seed0", "tiny_dacl_seed1"]
    assert all(r["status"] == "done" for r in runs)

    # Per-run metrics agree with the run's own metrics file (max val balanced acc).
    for r in runs:
        bal = [v for _, v in viz.read_metrics(out / r["run_dir"])["val/balanced_acc"]]
        assert r["best"]["balanced_acc"] == pytest.approx(max(bal))
        assert r["test"] is None

    # The table: mean ± sample std (n − 1) per config, recomputed here from the runs.
    rows = _summary_rows((out / "results.md").read_text())
    assert set(rows) == set(configs)
    cols = {"balanced_acc": 2, "acc": 3, "f1_macro": 4}
    for config in configs:
        assert rows[config][1] == "2"
        for metric, col in cols.items():
            values = [r["best"][metric] for r in runs if r["config"] == config]
            mean, std = _parse(rows[config][col])
            assert mean == pytest.approx(statistics.fmean(values), abs=5e-5)
            assert std == pytest.approx(statistics.stdev(values), abs=5e-5)
    cmds = (out / "commands.sh").read_text()
    assert cmds.count(" -m dacl.cli fit ") == 2 and " -m dacl.cli test " not in cmds
    assert "--seed_everything 1" in cmds and f"--data.root {data}" in cmds

    # Re-run: every run is finished, so nothing trains again and the markers are untouched.
    markers = sorted((out / "runs").glob("*/done.json"))
    assert len(markers) == 2
    stamps = {m: m.stat().st_mtime_ns for m in markers}
    logs = [*(out / "runs").rglob("events.out.tfevents.*"), *(out / "runs").rglob("metrics.csv")]
    events = {p: p.stat().st_mtime_ns for p in logs}
    capsys.readouterr()
    ablate.main(argv)
    log = capsys.readouterr().out
    assert log.count("finished, skipped") == 2
    assert ": fit" not in log and "resuming" not in log and ": test" not in log
    assert {m: m.stat().st_mtime_ns for m in markers} == stamps
    assert {p: p.stat().st_mtime_ns for p in events} == events
    assert json.loads((out / "results.json").read_text())["runs"] == runs

    # A partial run (checkpoint, no marker) resumes from its last.ckpt: here one run is made
    # partial and given a second epoch; the finished ones are still skipped.
    partial = out / "runs" / "tiny_dacl_seed0"
    (partial / "done.json").unlink()
    (partial / "fit.json").unlink()
    ablate.main([*argv, "--trainer.max_epochs", "2"])
    log = capsys.readouterr().out
    assert log.count("finished, skipped") == 1
    assert f"resuming from {partial / 'version_0' / 'checkpoints' / 'last.ckpt'}" in log
    resumed = json.loads((partial / "done.json").read_text())
    assert resumed["final"]["epoch"] == 1
    # resumed, not retrained: epoch 0 validated once, epoch 1 added to the same metrics file
    with (partial / "version_0" / viz.METRICS_FILE).open() as f:
        validated = [row for row in csv.DictReader(f) if row["metric"] == "val/acc"]
    assert len(validated) == 2
    cmds = (out / "commands.sh").read_text()
    assert cmds.count(" -m dacl.cli fit ") == 3 and cmds.count("--ckpt_path ") == 1


@pytest.mark.slow
def test_test_split_is_tested_with_the_best_checkpoint(tmp_path):
    data = write_dataset(tmp_path / "data", "folders", n_train=70, n_val=21, n_test=21, seed=0)
    out = tmp_path / "ablation"
    config = _config(tmp_path, "dacl")
    ablate.main(["--configs", str(config), "--seeds", "5", "--out", str(out), "--quiet",
                 "--data.root", str(data)])  # fmt: skip
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["status"] == "done"
    for metric in ("acc", "balanced_acc", "f1_macro"):
        assert 0.0 <= run["test"][metric] <= 1.0
    cmds = (out / "commands.sh").read_text().splitlines()
    test_cmd = next(c for c in cmds if " -m dacl.cli test " in c)
    assert test_cmd.endswith("--ckpt_path best") and "--seed_everything 5" in test_cmd
    md = (out / "results.md").read_text()
    assert "test balanced acc" in md
    cells = _summary_rows(md)[str(config)]
    assert _parse(cells[5]) == (pytest.approx(run["test"]["balanced_acc"], abs=5e-5), None)


def test_metrics_file_is_read_as_best_and_final_epochs(tmp_path):
    # Three epochs, then a resumed run (crashed after logging epoch 2, before checkpointing it)
    # logs epoch 2 again, at the same step, into the same folder: the later value counts.
    first = {10: (0, 0.30, 0.40, 0.20), 20: (1, 0.50, 0.60, 0.40), 30: (2, 0.40, 0.50, 0.30)}
    for logged in (first, {30: (2, 0.35, 0.36, 0.37)}):
        logger = CSVTensorBoardLogger(tmp_path, name="run", version=0)
        for step, (epoch, bal, acc, f1) in logged.items():
            val = {"val/balanced_acc": bal, "val/acc": acc, "val/f1_macro": f1}
            logger.log_metrics({"epoch": epoch, **val}, step)
        logger.finalize("success")
    m = ablate.read_fit_metrics(tmp_path / "run" / "version_0")
    assert m["best"]["epoch"] == 1 and m["best"]["step"] == 20
    assert m["best"]["balanced_acc"] == pytest.approx(0.50)
    assert m["best"]["acc"] == pytest.approx(0.60)
    assert m["best"]["f1_macro"] == pytest.approx(0.40)
    assert m["final"]["epoch"] == 2
    assert [m["final"][k] for k in ("balanced_acc", "acc", "f1_macro")] == pytest.approx(
        [0.35, 0.36, 0.37]
    )
    with pytest.raises(DACLError, match=r"has no metrics\.csv"):
        ablate.read_fit_metrics(tmp_path / "missing")


def test_one_run_gives_a_dash_for_std(tmp_path):
    records = [{"config": "a.yaml", "seed": 0, "name": "a_seed0", "status": "done", "best": {}}]
    records[0]["best"] = {"balanced_acc": 0.5, "acc": 0.6, "f1_macro": 0.4, "epoch": 3}
    records[0]["final"] = records[0]["best"]
    md = ablate.markdown(ablate.summarize(records, ["a.yaml"]), records)
    row = _summary_rows(md)["a.yaml"]
    assert row[1:5] == ["1", "0.5000 ± –", "0.6000 ± –", "0.4000 ± –"]


def test_welch_test_against_hand_computed_values():
    # Student's t tails at textbook points: df 1 is Cauchy (P(|T| > 1) = 1/2); 2.776 is the
    # two-sided 5 % critical value at df 4, 2.228 at df 10
    assert 2 * analysis.t_tail(1.0, 1) == pytest.approx(0.5, abs=1e-6)
    assert 2 * analysis.t_tail(2.776, 4) == pytest.approx(0.05, abs=2e-4)
    assert 2 * analysis.t_tail(2.228, 10) == pytest.approx(0.05, abs=2e-4)
    a, b = [0.60, 0.62, 0.61], [0.58, 0.59, 0.57, 0.60]
    va, vb = 0.0001 / 3, (0.000166666 + 0.0000) / 4  # sample variances 1e-4 and 1.6667e-4
    got = analysis.welch(a, b)
    assert got["diff"] == pytest.approx(0.61 - 0.585)
    assert got["t"] == pytest.approx(0.025 / (va + vb) ** 0.5, rel=1e-4)
    assert got["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 3), rel=1e-4)
    assert 0.01 < got["p"] < 0.05
    assert analysis.welch([0.5], b) is None  # one run: no test


def test_results_table_compares_each_config_with_the_first(tmp_path):
    records = []
    for config, values in (("a.yaml", [0.60, 0.62, 0.61]), ("b.yaml", [0.58, 0.59, 0.57])):
        for seed, v in enumerate(values):
            best = {"balanced_acc": v, "acc": v, "f1_macro": v, "epoch": 1}
            records.append(
                {"config": config, "seed": seed, "name": f"{config}{seed}", "status": "done",
                 "best": best, "final": best}
            )  # fmt: skip
    summary = ablate.summarize(records, ["a.yaml", "b.yaml"])
    assert "vs_first" not in summary[0]
    assert summary[1]["vs_first"]["diff"] == pytest.approx(-0.03)
    md = ablate.markdown(summary, records)
    assert "Welch" in md and _summary_rows(md)["b.yaml"][-1].startswith("-0.0300 (t = -3.67")


def test_paired_statistics_against_hand_computed_values():
    # Differences 0.01, 0.03, 0.02, 0.04, 0.00: mean 0.02, sample sd sqrt(0.001 / 4) = 0.015811,
    # standard error 0.0070711, t = 2.8284 at 4 df; t(4, 0.975) = 2.776445 (tables), so the
    # 95 % CI is 0.02 ± 0.019632; two-sided p = 0.047421 (df 4 has a closed-form CDF:
    # F(t) = 1/2 + 3/8 · x (1 − x² / 12) with x = t / sqrt(1 + t² / 4) = 1.63299 here).
    assert analysis.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert analysis.t_quantile(0.975, 1) == pytest.approx(
        12.706205, abs=1e-4
    )  # Cauchy: tan(0.475π)
    assert analysis.t_quantile(0.975, 10) == pytest.approx(2.228139, abs=1e-5)
    got = analysis.paired([0.01, 0.03, 0.02, 0.04, 0.00])
    assert got["n"] == 5 and got["df"] == 4
    assert got["diff"] == pytest.approx(0.02)
    assert got["sd"] == pytest.approx(0.0158114, abs=1e-7)
    assert got["ci"] == pytest.approx([0.02 - 0.0196324, 0.02 + 0.0196324], abs=1e-6)
    assert got["t"] == pytest.approx(2.828427, abs=1e-6)
    assert got["p"] == pytest.approx(0.0474207, abs=1e-6)
    assert analysis.paired([0.01]) is None and analysis.paired([]) is None  # below two pairs
    flat = analysis.paired([0.01, 0.01])  # no spread: an interval of width 0, no t
    assert flat["ci"] == pytest.approx([0.01, 0.01]) and flat["t"] is None and flat["p"] is None
    with pytest.raises(DACLError, match=r"0\.5 <= q < 1"):
        analysis.t_quantile(0.2, 4)


def _records(values: dict[str, list[float | None]]) -> list[dict]:
    """Done runs: per config, per seed a best-epoch value (the final one 0.1 lower), or a
    failed run for ``None``."""
    records = []
    for config, seeds in values.items():
        for seed, v in enumerate(seeds):
            r = {"config": config, "seed": seed, "name": f"{config}{seed}", "status": "failed"}
            if v is not None:
                best = {"balanced_acc": v, "acc": v + 0.05, "f1_macro": v - 0.05, "epoch": 3}
                final = {**{m: x - 0.1 for m, x in best.items()}, "epoch": 4}
                r |= {"status": "done", "best": best, "final": final}
            records.append(r)
    return records


def test_paired_comparison_pairs_the_seeds_both_configs_completed():
    # b's seed 1 failed: pairs are seeds 0, 2 and 3, its differences from a 0.02, 0.04, 0.00.
    first, second = [0.50, 0.52, 0.49, 0.51], [0.52, None, 0.53, 0.51]
    records = _records({"a.yaml": first, "b.yaml": second, "c.yaml": [0.4, None, None, None]})
    summary = ablate.summarize(records, ["a.yaml", "b.yaml", "c.yaml"])
    b, c = summary[1], summary[2]
    assert b["pairs"] == [0, 2, 3] and c["pairs"] == [0]
    want = analysis.paired([0.02, 0.04, 0.00])
    for epoch in ablate.EPOCHS:  # final = best − 0.1 in both: the same differences
        for m in ablate.METRICS:
            got = b["paired"][epoch][m]
            assert got["ci"] == pytest.approx(want["ci"])
            assert {**got, "ci": 0} == pytest.approx({**want, "ci": 0})
            assert b["welch"][epoch][m]["diff"] == pytest.approx(0.52 - 0.505)  # all runs
            assert c["paired"][epoch][m] is None and c["welch"][epoch][m] is None
    assert b["final_balanced_acc"]["mean"] == pytest.approx(0.42)
    assert b["vs_first"] == b["welch"]["best"]["balanced_acc"]
    md = ablate.markdown(summary, records)
    section = md.split("## Paired comparison")[1].split("## Runs")[0]
    rows = [r for r in section.splitlines() if r.startswith("| `")]
    assert len(rows) == 2 * len(ablate.EPOCHS) * len(ablate.METRICS)
    cells = [x.strip() for x in rows[0].strip("|").split("|")]
    lo, hi = want["ci"]
    assert cells[:5] == ["`b.yaml`", "best", "balanced acc", "3", "0.5200 ± 0.0100"]
    assert cells[5] == "0.5050 ± 0.0129"  # the first config's four runs
    welch_p = b["vs_first"]["p"]
    assert cells[6:] == [f"{want['diff']:+.4f}", f"[{lo:+.4f}, {hi:+.4f}]",
                         f"{want['t']:.2f} (2)", f"{want['p']:.3f}", f"{welch_p:.3f}"]  # fmt: skip
    assert [x.strip() for x in rows[-1].strip("|").split("|")][3:] == [
        "1", "0.2500 ± –", "0.3550 ± 0.0129", *["n/a"] * 5
    ]  # fmt: skip
    # One config: nothing to compare, and no crash.
    one = ablate.summarize(records[:4], ["a.yaml"])
    assert "nothing to compare" in ablate.markdown(one, records[:4])


def _tiny_checkpoint(path: Path, variant: str, seed: int = 0) -> Path:
    """An untrained 32 px gray-stem model saved as a dacl checkpoint (weights, hyper-parameters)."""
    torch.manual_seed(seed)
    module = DACLModule(variant=variant, image_size=32, in_chans=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_compactness_against_hand_computed_values():
    # Class 0 at (0, 0) and (2, 0), mean (1, 0); class 2 at (0, 4) and (0, 6), mean (0, 5); no
    # class 1. Every face is 1 from its class mean; the means are sqrt(26) apart.
    f = torch.tensor([[0.0, 0.0], [0.0, 4.0], [2.0, 0.0], [0.0, 6.0]])
    got = analysis.compactness(f, torch.tensor([0, 2, 0, 2]), ["a", "b", "c"])
    assert got["intra"] == pytest.approx(1.0) and got["inter"] == pytest.approx(26**0.5)
    assert got["ratio"] == pytest.approx(26**-0.5)
    assert got["intra_per_class"] == {"a": pytest.approx(1.0), "c": pytest.approx(1.0)}
    with pytest.raises(DACLError, match="two classes"):
        analysis.compactness(f, torch.zeros(4, dtype=torch.long), ["a"])


def test_analysis_of_tiny_models_on_val(synthetic_dataset, tmp_path):
    data = FER2013DataModule(str(synthetic_dataset("folders")), crop=32, resize=36, batch_size=8)
    results = {
        v: analysis.analyze(_tiny_checkpoint(tmp_path / f"{v}.ckpt", v), data, "cpu", 16)
        for v in ("dacl", "center", "softmax")
    }
    n = len(data.labels("val"))
    for variant, got in results.items():
        assert got["variant"] == variant and got["n_images"] == n
        assert got["intra"] > 0 and got["inter"] > 0
        assert got["ratio"] == pytest.approx(got["intra"] / got["inter"])
        assert set(got["intra_per_class"]) == set(data.class_names)
    assert results["center"]["attention"] is None and results["softmax"]["attention"] is None
    att = results["dacl"]["attention"]
    per = att["per_class"]
    assert sum(c["n"] for c in per.values()) == att["all"]["n"] == n
    for stats in [att["all"], *per.values()]:
        assert 0 < stats["mean"] < 1
        assert 0 <= stats["low"] <= 1 and 0 <= stats["high"] <= 1
        assert stats["low"] + stats["high"] <= 1
        assert len(stats["hist"]) == analysis.BINS and sum(stats["hist"]) == pytest.approx(1)
        assert sum(stats["hist"][:2]) == pytest.approx(stats["low"], abs=1e-9)  # bins of 0.05
    for key in ("mean", "low", "high"):  # the classes' values, weighted by faces, are the whole's
        whole = sum(c[key] * c["n"] for c in per.values()) / n
        assert whole == pytest.approx(att["all"][key])
    wrong = FER2013DataModule(str(synthetic_dataset("folders")), crop=32, resize=36,
                              labels=LabelOptions(classes=["happy", "sad"]))  # fmt: skip
    with pytest.raises(DACLError, match="trained on classes"):
        analysis.analyze(tmp_path / "dacl.ckpt", wrong, "cpu")


def test_analyze_option_writes_table_json_and_figure(
    tmp_path, fake_runs, synthetic_dataset, capsys
):
    configs = [_config(tmp_path, v) for v in ("dacl", "softmax")]
    out = tmp_path / "ablation"
    for config in configs:
        for seed in (0, 1):
            ckpt = out / "runs" / f"{config.stem}_seed{seed}" / "version_0" / "checkpoints"
            _tiny_checkpoint(ckpt / "best-epoch=00.ckpt", config.stem.removeprefix("tiny_"), seed)
    data = str(synthetic_dataset("folders"))
    argv = ["--configs", *map(str, configs), "--seeds", "0", "1", "--out", str(out),
            "--test", "never", "--analyze", "--data.root", data]  # fmt: skip
    ablate.main(argv)
    results = json.loads((out / "attention.json").read_text())
    assert [r["config"] for r in results["summary"]] == list(map(str, configs))
    assert len(results["runs"]) == 4 and all(
        r["checkpoint"].endswith(".ckpt") for r in results["runs"]
    )
    dacl, softmax = results["summary"]
    assert dacl["n"] == 2 and dacl["variant"] == "dacl" and softmax["attention"] is None
    ratios = [r["ratio"] for r in results["runs"] if r["config"] == str(configs[0])]
    assert dacl["ratio"]["mean"] == pytest.approx(statistics.fmean(ratios))
    assert set(dacl["attention"]) == {"all", *FER2013_CLASSES}
    md = (out / "attention.md").read_text()
    assert f"`{configs[1]}` (softmax)" in md and "a < 0.1" in md and "attention.png" in md
    assert (out / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A finished run whose checkpoint is not on this machine keeps its earlier measurement, one
    # line says so, and nothing else is overwritten; one never measured is skipped.
    next((out / "runs" / "tiny_softmax_seed1").rglob("best*.ckpt")).unlink()
    next((out / "runs" / "tiny_dacl_seed1").rglob("best*.ckpt")).unlink()
    earlier = [r for r in results["runs"] if r["name"] != "tiny_dacl_seed1"]
    (out / "attention.json").write_text(json.dumps({"summary": [], "runs": earlier}))
    capsys.readouterr()
    ablate.main([*argv, "--soft"])
    said = capsys.readouterr().out
    assert "tiny_softmax_seed1: earlier analysis kept" in said
    assert "tiny_dacl_seed1: skipped" in said and "tiny_dacl_seed1: no soft.npz, skipped" in said
    again = json.loads((out / "attention.json").read_text())["runs"]
    assert [r for r in again if r["name"] == "tiny_softmax_seed1"] == [
        r for r in earlier if r["name"] == "tiny_softmax_seed1"
    ]
    assert sorted(r["name"] for r in again) == sorted(r["name"] for r in earlier)
    # --soft: each run with its best checkpoint gets soft.npz (ten-crop, train and val)
    soft = SoftTargets.load(out / "runs" / "tiny_dacl_seed0" / "soft.npz")
    assert len(soft.keys["train"]) and len(soft.keys["val"])
    assert not (out / "runs" / "tiny_dacl_seed1" / "soft.npz").exists()


def test_soft_targets_are_written_before_the_next_run(
    tmp_path, fake_runs, synthetic_dataset, monkeypatch
):
    """A checkpoint lives only on the machine that trained it: a long ablation spread over
    machines keeps each run's soft targets only if they are written as that run finishes."""
    out = tmp_path / "ablation"
    soft = _before_each_fit(
        monkeypatch, lambda: sorted(p.parent.name for p in out.rglob("soft.npz"))
    )
    _two_seeds_of_dacl(tmp_path, out, synthetic_dataset, "--soft")
    assert soft == [[], ["tiny_dacl_seed0"]]
    assert (out / "runs" / "tiny_dacl_seed1" / "soft.npz").is_file()


def test_each_run_is_analysed_before_the_next_run_and_once(
    tmp_path, fake_runs, synthetic_dataset, monkeypatch
):
    """As with soft targets: a run's analysis is written while its checkpoint is surely here,
    and a run already analysed from the same checkpoint is not measured again."""
    out = tmp_path / "ablation"
    file = out / "attention.json"
    analysed = _before_each_fit(monkeypatch, lambda: sorted(
        r["name"] for r in (json.loads(file.read_text())["runs"] if file.is_file() else [])
    ))  # fmt: skip
    measured: list[str] = []
    measure = analysis.analyze

    def analyze(ckpt, data):
        measured.append(Path(ckpt).parent.parent.parent.name)
        return measure(ckpt, data, "cpu")

    monkeypatch.setattr(analysis, "analyze", analyze)
    _two_seeds_of_dacl(tmp_path, out, synthetic_dataset, "--analyze")
    assert analysed == [[], ["tiny_dacl_seed0"]]
    assert measured == ["tiny_dacl_seed0", "tiny_dacl_seed1"]  # each once, none again at the end
    runs = json.loads((out / "attention.json").read_text())["runs"]
    assert sorted(r["name"] for r in runs) == ["tiny_dacl_seed0", "tiny_dacl_seed1"]


def _before_each_fit(monkeypatch, probe):
    """The list of ``probe()``'s answers just before each (fake) run, filled as runs start."""
    seen: list = []
    fake = ablate._call

    def call(cmd, run, step, quiet):
        seen.append(probe())
        return fake(cmd, run, step, quiet)

    monkeypatch.setattr(ablate, "_call", call)
    return seen


def _two_seeds_of_dacl(tmp_path, out, synthetic_dataset, option):
    """``dacl ablate`` of one tiny DACL config at seeds 0 and 1 with ``option``, each run's best
    checkpoint in place as if trained."""
    for seed in (0, 1):
        ckpt = out / "runs" / f"tiny_dacl_seed{seed}" / "version_0" / "checkpoints"
        _tiny_checkpoint(ckpt / "best-epoch=00.ckpt", "dacl", seed)
    data = str(synthetic_dataset("folders"))
    ablate.main(["--configs", str(_config(tmp_path, "dacl")), "--seeds", "0", "1", "--out",
                 str(out), "--test", "never", option, "--data.root", data])  # fmt: skip


@pytest.fixture
def fake_runs(monkeypatch):
    """Replace the subprocess: record each command, fail those whose config is in ``fail``."""
    calls: list[list[str]] = []
    fail: dict[str, int] = {}
    metrics = {"best": {"epoch": 0, "step": 1, "balanced_acc": 0.5, "acc": 0.5, "f1_macro": 0.5}}
    metrics["final"] = metrics["best"]

    def fake_call(cmd, run, step, quiet):
        calls.append(cmd)
        return fail.get(run.config.stem, 0), 0.1

    monkeypatch.setattr(ablate, "_call", fake_call)
    monkeypatch.setattr(ablate, "read_fit_metrics", lambda run_dir: metrics)
    return calls, fail


def test_partial_run_resumes_from_last_checkpoint(tmp_path, fake_runs):
    calls, _ = fake_runs
    config = _config(tmp_path, "dacl")
    out = tmp_path / "ablation"
    last = out / "runs" / "tiny_dacl_seed3" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    ablate.main(["--configs", str(config), "--seeds", "3", "--out", str(out), "--test", "never"])
    (fit,) = calls
    assert fit[fit.index("--ckpt_path") + 1] == str(last)
    assert fit[fit.index("--trainer.logger.init_args.name") + 1] == "tiny_dacl_seed3"
    assert (last.parents[2] / "done.json").is_file()


def test_failed_run_is_reported_and_the_others_go_on(tmp_path, fake_runs, capsys):
    calls, fail = fake_runs
    fail["tiny_softmax"] = 3
    configs = [str(_config(tmp_path, "softmax")), str(_config(tmp_path, "dacl"))]
    out = tmp_path / "ablation"
    argv = ["--configs", *configs, "--seeds", "0", "--out", str(out), "--test", "never"]
    with pytest.raises(SystemExit) as exc:
        ablate.main(argv)
    assert exc.value.code != 0
    assert "tiny_softmax_seed0 (exit 3)" in str(exc.value.code)
    assert len(calls) == 2  # the dacl run still ran after the softmax run failed
    assert (out / "runs" / "tiny_dacl_seed0" / "done.json").is_file()
    assert not (out / "runs" / "tiny_softmax_seed0" / "done.json").exists()
    md = (out / "results.md").read_text()
    assert "failed (exit 3, fit)" in md
    # Fixed, re-run: only the failed run runs again.
    fail.clear()
    ablate.main(argv)
    assert len(calls) == 3 and "softmax" in calls[-1][calls[-1].index("--config") + 1]


def test_results_are_written_after_every_run(tmp_path, fake_runs, monkeypatch):
    """A long ablation can be read, and committed, while its later runs still train."""
    calls, _ = fake_runs
    out = tmp_path / "ablation"
    seen: list[str] = []
    fake_call = ablate._call

    def call_and_look(cmd, run, step, quiet):  # what results.md says when each run starts
        md = out / "results.md"
        seen.append(md.read_text() if md.is_file() else "")
        return fake_call(cmd, run, step, quiet)

    monkeypatch.setattr(ablate, "_call", call_and_look)
    config = str(_config(tmp_path, "dacl"))
    ablate.main(["--configs", config, "--seeds", "0", "1", "--out", str(out), "--test", "never"])
    assert seen[0] == "" and "tiny_dacl_seed0" in seen[1] and "tiny_dacl_seed1" not in seen[1]
    (summary,) = json.loads((out / "results.json").read_text())["summary"]
    assert len(calls) == 2 and summary["n"] == 2


def test_results_while_a_run_trains_count_later_seeds_finished_earlier(
    tmp_path, fake_runs, monkeypatch
):
    """Resuming an ablation at seed 0 does not hide the seeds an earlier session finished."""
    calls, _ = fake_runs
    out = tmp_path / "ablation"
    config = str(_config(tmp_path, "dacl"))
    ablate.main(["--configs", config, "--seeds", "1", "2", "--out", str(out), "--test", "never"])
    seen: list[int] = []
    fake_call = ablate._call

    def call_and_look(cmd, run, step, quiet):  # runs in results.json when seed 0 starts
        seen.append(json.loads((out / "results.json").read_text())["summary"][0]["n"])
        return fake_call(cmd, run, step, quiet)

    monkeypatch.setattr(ablate, "_call", call_and_look)
    argv = ["--configs", config, "--seeds", "0", "1", "2", "--out", str(out), "--test", "never"]
    ablate.main(argv)
    assert seen == [2] and len(calls) == 3
    assert json.loads((out / "results.json").read_text())["summary"][0]["n"] == 3


def test_arguments_the_runner_owns_are_refused(tmp_path):
    config = str(_config(tmp_path, "dacl"))
    with pytest.raises(SystemExit, match="set by the runner"):
        ablate.main(
            ["--configs", config, "--out", str(tmp_path / "o"), "--trainer.logger.init_args.name=x"]
        )
    # not an ablate option: the parser refuses it in one line
    with pytest.raises(DACLError, match="unrecognized arguments: --seed_everything"):
        ablate.main(["--configs", config, "--out", str(tmp_path / "o"), "--seed_everything", "3"])
    # a seed NumPy cannot take: one line before any run starts (was: each run failing)
    with pytest.raises(DACLError, match=r"--seeds must be in 0\.\.4294967295, got -1"):
        ablate.main(["--configs", config, "--out", str(tmp_path / "o"), "--seeds", "0", "-1"])
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("")  # an --out that cannot be a folder: one line
    with pytest.raises(DACLError, match=r"--out '.*file/o' is not writable \(Not a directory"):
        ablate.main(["--configs", config, "--out", str(tmp_path / "file" / "o")])


def test_a_second_runner_on_the_same_out_is_refused(tmp_path, fake_runs):
    """Two runners on one folder would train the same runs side by side, each overwriting the
    other's checkpoints and metrics: while one holds the folder, another stops in one line."""
    calls, _ = fake_runs
    out = tmp_path / "ablation"
    argv = ["--configs", str(_config(tmp_path, "dacl")), "--seeds", "0", "--out", str(out)]
    out.mkdir()
    refused = pytest.raises(SystemExit, match=r"--out '.*ablation' is in use by another dacl")
    with FileLock(out / ablate.LOCK), refused:  # held as a running runner holds it
        ablate.main([*argv, "--test", "never"])
    assert calls == [] and not (out / "runs").exists()
    ablate.main([*argv, "--test", "never"])  # the lock given back: this one runs
    assert len(calls) == 1 and (out / "runs" / "tiny_dacl_seed0" / "done.json").is_file()
