"""SparseCenterLoss and the center rule (SPEC §2), checked against values computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from dacl import DACLModule, SparseCenterLoss

# K = 3 classes, d = 4, m = 5; class 2 is absent from the batch.
FEATURES = [
    [1.0, 0.0, 2.0, -1.0],
    [0.5, 1.5, 0.0, 2.0],
    [-1.0, 2.0, 1.0, 0.0],
    [2.0, -0.5, 0.5, 1.0],
    [0.0, 1.0, -2.0, 0.5],
]
ATTENTION = [
    [0.9, 0.1, 0.5, 0.2],
    [0.3, 0.8, 0.6, 0.4],
    [0.5, 0.5, 0.5, 0.5],
    [0.1, 0.7, 0.9, 0.3],
    [0.6, 0.2, 0.4, 0.8],
]
LABELS = [0, 1, 0, 1, 0]
CENTERS = [
    [0.5, 0.5, 0.5, 0.5],
    [-1.0, 0.0, 1.0, 2.0],
    [3.0, 3.0, 3.0, 3.0],
]
K, D, M = 3, 4, 5


def make_loss(alpha=0.5):
    scl = SparseCenterLoss(num_classes=K, feat_dim=D, alpha=alpha)
    scl.centers.copy_(torch.tensor(CENTERS))
    return scl


def expected_loss():
    total = 0.0
    for i in range(M):
        for j in range(D):
            c = CENTERS[LABELS[i]][j]
            total += ATTENTION[i][j] * (FEATURES[i][j] - c) ** 2
    return total / (2 * M)


def test_loss_and_gradients_equal_spec_formulas():
    f = torch.tensor(FEATURES, requires_grad=True)
    a = torch.tensor(ATTENTION, requires_grad=True)
    loss = make_loss()(f, a, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected_loss(), rel=1e-6)
    loss.backward()
    for i in range(M):
        for j in range(D):
            diff = FEATURES[i][j] - CENTERS[LABELS[i]][j]
            assert f.grad[i, j].item() == pytest.approx(ATTENTION[i][j] * diff / M, abs=1e-6)
            assert a.grad[i, j].item() == pytest.approx(diff**2 / (2 * M), abs=1e-6)


def test_centers_are_a_saved_buffer_not_a_parameter():
    scl = make_loss()
    assert list(scl.parameters()) == []
    assert torch.equal(scl.state_dict()["centers"], torch.tensor(CENTERS))


def test_center_update_equals_spec_rule_and_absent_class_stays():
    lam, alpha = 0.01, 0.5
    scl = make_loss(alpha)
    scl.update_centers(
        torch.tensor(FEATURES), torch.tensor(ATTENTION), torch.tensor(LABELS), lam=lam
    )
    for k in range(K):
        members = [i for i in range(M) if LABELS[i] == k]
        for j in range(D):
            pull = sum(ATTENTION[i][j] * (FEATURES[i][j] - CENTERS[k][j]) for i in members)
            want = CENTERS[k][j] + alpha * lam * pull / (1 + len(members))
            assert scl.centers[k, j].item() == pytest.approx(want, abs=1e-7)
    assert torch.equal(scl.centers[2], torch.tensor(CENTERS[2]))


def test_centers_start_as_normal_with_variance_two_over_k():
    torch.manual_seed(0)
    centers = SparseCenterLoss(num_classes=7, feat_dim=512).centers
    assert centers.mean().item() == pytest.approx(0.0, abs=0.03)
    assert centers.var().item() == pytest.approx(2 / 7, rel=0.05)


def test_loss_is_float32_under_autocast():
    scl = make_loss()
    f = torch.tensor(FEATURES).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = scl(f, torch.tensor(ATTENTION).bfloat16(), torch.tensor(LABELS))
    assert loss.dtype == torch.float32


def _step(module, images, labels):
    """One training step as Lightning runs it, without a Trainer."""
    module.train()
    return module.training_step((images, labels), 0)


def test_center_variant_is_plain_center_loss():
    torch.manual_seed(0)
    module = DACLModule(variant="center", image_size=32, channels_last=False)
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 5])
    centers = module.center_loss.centers.clone()
    logits, f, a = module(images)
    assert torch.equal(a, torch.ones_like(f))
    plain = ((f - centers[labels]) ** 2).sum() / (2 * 6)
    ce = F.cross_entropy(logits, labels)
    torch.manual_seed(1)
    loss = _step(module, images, labels)
    torch.testing.assert_close(loss, ce + 0.01 * plain, rtol=1e-5, atol=1e-6)
    # the Wen et al. rule with a ≡ 1
    expected = centers.clone()
    for k in labels.unique():
        idx = labels == k
        expected[k] += 0.5 * 0.01 * (f[idx] - centers[k]).sum(0).detach() / (1 + idx.sum())
    torch.testing.assert_close(module.center_loss.centers, expected)


def test_softmax_variant_is_cross_entropy_and_leaves_centers():
    torch.manual_seed(0)
    module = DACLModule(variant="softmax", lam=0.01, image_size=32, channels_last=False)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 3, 6])
    centers = module.center_loss.centers.clone()
    logits, *_ = module.train()(images)
    loss = _step(module, images, labels)
    assert module.lam == 0.0
    # BatchNorm in train mode sees the same batch both times, so the logits agree
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    assert torch.equal(module.center_loss.centers, centers)
