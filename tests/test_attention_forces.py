"""benchmarks/attention_forces.py: its statistics against hand computations and plain SGD."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "attention_forces.py"


@pytest.fixture(scope="module")
def forces():
    spec = importlib.util.spec_from_file_location("attention_forces", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pearson_and_ranks_against_numpy(forces):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    got = forces.pearson(torch.from_numpy(x), torch.from_numpy(y))
    want = [np.corrcoef(a, b)[0, 1] for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    assert forces.ranks(torch.tensor([0.3, -1.0, 2.0])).tolist() == [1.0, 0.0, 2.0]


def test_decay_alone_is_what_sgd_with_momentum_leaves_of_a_weight_without_gradient(forces):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4096))
    start = float(w.norm())
    opt = torch.optim.SGD([w], lr=0.03, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3000)
    for _ in range(2000):
        w.grad = torch.zeros_like(w)
        opt.step()
        sched.step()
    ckpt = {"lr_schedulers": [sched.state_dict()], "optimizer_states": [opt.state_dict()]}
    assert float(w.norm()) / start == pytest.approx(forces.decay_alone(ckpt), rel=2e-3)
    assert forces.decay_alone({"lr_schedulers": [{"step_size": 20}]}) is None
    assert forces.decay_alone({}) is None  # a shipped model's checkpoint: no optimizer


def test_forces_and_selection_of_a_tiny_model(forces, tiny_checkpoint):
    _, trained, data, _ = tiny_checkpoint
    module = copy.deepcopy(trained)  # train mode moves BatchNorm's statistics
    data.setup("fit")
    got = forces.forces(module, data, batches=1)
    fc = module.net.heads.fc
    assert got["wd_w"] == pytest.approx(5e-4 * float(fc.weight.norm()), rel=1e-6)
    assert got["g"] > 0 and -1 <= got["cosine"] <= 1
    chosen = forces.selection(module, data)
    with torch.no_grad():
        _, _, a = module.eval().net(data.inputs("val", torch.arange(len(data.labels("val")))))
    assert chosen["a_mean"] == pytest.approx(float(a.mean()), rel=1e-5)
    assert all(-1 <= chosen[k] <= 1 for k in ("features", "faces"))
    w, b = forces.head_differences(module)
    torch.testing.assert_close(w, fc.weight[1::2] - fc.weight[0::2])
    torch.testing.assert_close(b, fc.bias[1::2] - fc.bias[0::2])


def test_a_runs_initial_heads_are_rebuilt_from_its_seed(forces, tiny_checkpoint, tmp_path):
    from dacl import DACLModule

    trained = tiny_checkpoint[1]
    torch.manual_seed(5)
    built = DACLModule.from_config(trained.hparams, "test")  # as a run seeded 5 builds it
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 5\nmodel: {}\n")
    seed = forces.run_seed(str(run / "checkpoints" / "best.ckpt"))
    assert seed == 5 and forces.run_seed(str(tmp_path / "elsewhere.ckpt")) is None
    again = forces.head_differences(forces.initial(trained, seed))[0]
    assert forces.cosine(again, forces.head_differences(built)[0]) == pytest.approx(1.0)
    other = forces.head_differences(forces.initial(trained, 6))[0]
    assert abs(forces.cosine(other, again)) < 0.1
