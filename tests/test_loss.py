"""SparseCenterLoss and the center rule (method.md §2), checked against values computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from dacl import DACLError, DACLModule, SparseCenterLoss
from dacl.loss import distillation_loss

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
    alpha = 0.5
    scl = make_loss(alpha)
    scl.update_centers(torch.tensor(FEATURES), torch.tensor(ATTENTION), torch.tensor(LABELS))
    for k in range(K):
        members = [i for i in range(M) if LABELS[i] == k]
        for j in range(D):
            pull = sum(ATTENTION[i][j] * (FEATURES[i][j] - CENTERS[k][j]) for i in members)
            # method.md §2: no λ in the rule
            want = CENTERS[k][j] + alpha * pull / (1 + len(members))
            assert scl.centers[k, j].item() == pytest.approx(want, abs=1e-7)
    assert torch.equal(scl.centers[2], torch.tensor(CENTERS[2]))


def test_lambda_changes_the_loss_but_not_the_centers():
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 4])
    losses, centers = [], []
    for lam in (0.01, 0.5):
        torch.manual_seed(0)
        module = DACLModule(variant="dacl", lam=lam, image_size=32, channels_last=False)
        losses.append(_step(module, images, labels).item())
        centers.append(module.center_loss.centers.clone())
    assert losses[0] != pytest.approx(losses[1])
    assert torch.equal(centers[0], centers[1])


class _ReferenceSparseCenterLoss(torch.autograd.Function):
    """The reference's custom autograd function, re-derived from method.md §2: forward L_SC;
    backward scales the f and a gradients by the incoming gradient (λ), but returns the centers'
    gradient −Σ_{i:y_i=k} a_i ⊙ (f_i − c_k) / (1 + n_k) unscaled."""

    @staticmethod
    def forward(ctx, f, a, labels, centers):
        ctx.save_for_backward(f, a, labels, centers)
        diff = f - centers[labels]
        return (a * diff**2).sum() / (2 * f.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        f, a, labels, centers = ctx.saved_tensors
        m = f.shape[0]
        diff = f - centers[labels]
        grad_centers = torch.zeros_like(centers)
        for k in range(centers.shape[0]):
            idx = labels == k
            grad_centers[k] = -(a[idx] * diff[idx]).sum(0) / (1 + idx.sum())
        return grad_out * a * diff / m, grad_out * diff**2 / (2 * m), None, grad_centers


class _TinyDACL(torch.nn.Module):
    """A small feature/attention/classifier net, shared by both sides of the comparison."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 4)
        self.att = torch.nn.Linear(6, 4)
        self.cls = torch.nn.Linear(4, K)

    def forward(self, x):
        f = torch.relu(self.body(x))
        return self.cls(f), f, torch.sigmoid(self.att(x))


def test_reference_autograd_function_agrees_over_three_optimizer_steps():
    lam, alpha, lr = 0.01, 0.5, 0.1
    torch.manual_seed(0)
    ours_net = _TinyDACL().double()
    ref_net = _TinyDACL().double()
    ref_net.load_state_dict(ours_net.state_dict())
    ours = make_loss(alpha).double()
    ref_centers = torch.nn.Parameter(ours.centers.clone())
    opt_ours = torch.optim.SGD(ours_net.parameters(), lr=lr, momentum=0.9)
    opt_ref = torch.optim.SGD(ref_net.parameters(), lr=lr, momentum=0.9)
    opt_centers = torch.optim.SGD([ref_centers], lr=alpha)  # the reference's center optimizer
    for _ in range(3):
        x, y = torch.randn(M, 6, dtype=torch.float64), torch.tensor(LABELS)
        logits, f, a = ours_net(x)
        sc = ours(f, a, y)
        loss = F.cross_entropy(logits, y) + lam * sc
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()
        ours.update_centers(f.detach(), a.detach(), y)

        logits_r, f_r, a_r = ref_net(x)
        sc_r = _ReferenceSparseCenterLoss.apply(f_r, a_r, y, ref_centers)
        loss_r = F.cross_entropy(logits_r, y) + lam * sc_r
        opt_ref.zero_grad()
        opt_centers.zero_grad()
        loss_r.backward()
        opt_ref.step()
        opt_centers.step()
        torch.testing.assert_close(sc, sc_r, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours.centers, ref_centers.detach(), rtol=1e-12, atol=1e-12)
        for p, q in zip(ours_net.parameters(), ref_net.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_centers_start_as_normal_with_variance_two_over_k():
    torch.manual_seed(0)
    centers = SparseCenterLoss(num_classes=7, feat_dim=512).centers
    assert centers.mean().item() == pytest.approx(0.0, abs=0.03)
    assert centers.var().item() == pytest.approx(2 / 7, rel=0.05)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_loss_is_computed_in_the_centers_float32_under_autocast(dtype):
    """The inputs are cast to the centers' dtype, whatever theirs: bf16 inputs alone would come
    out float32 by type promotion against the float32 centers, float64 ones show the cast."""
    scl = make_loss()
    f, a = torch.tensor(FEATURES, dtype=dtype), torch.tensor(ATTENTION, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = scl(f, a, torch.tensor(LABELS))
    assert loss.dtype == torch.float32
    diff = f.float() - scl.centers[torch.tensor(LABELS)]
    assert torch.equal(loss, (a.float() * diff.pow(2)).sum() / (2 * M))


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
    # the Wen et al. rule with a ≡ 1, no λ (method.md §2)
    expected = centers.clone()
    for k in labels.unique():
        idx = labels == k
        expected[k] += 0.5 * (f[idx] - centers[k]).sum(0).detach() / (1 + idx.sum())
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


def test_distillation_term_and_its_gradient_equal_the_hand_computation():

    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    t, m = 2.0, 2
    qt = q.pow(1 / t) / q.pow(1 / t).sum(1, keepdim=True)  # softmax(log q / T)
    pt = (z / t).exp() / (z / t).exp().sum(1, keepdim=True)
    by_hand = t * t * (qt * (qt.log() - pt.log())).sum() / m
    loss = distillation_loss(z, q, t)
    assert torch.allclose(loss.double(), by_hand)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.allclose(grad.double(), (t / m) * (pt - qt).detach(), atol=1e-6)
    # a student equal to the teacher at T = 1 has nothing to learn
    assert distillation_loss(q.log(), q, 1.0).abs() < 1e-6


def test_distilled_training_loss_mixes_hard_and_soft_targets_and_needs_a_teacher():
    torch.manual_seed(0)
    module = DACLModule(image_size=32, in_chans=1, distill={"weight": 0.25, "temperature": 3.0})
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    q = torch.softmax(torch.randn(4, 7), -1)
    module.train()
    losses, logits, _ = module._losses((x, y, q))
    ce = F.cross_entropy(logits.float(), y)

    kd = distillation_loss(logits, q, 3.0)
    assert torch.allclose(losses["loss_kd"], kd)
    assert torch.allclose(losses["loss"], 0.75 * ce + 0.25 * kd + 0.01 * losses["loss_sc"])
    with pytest.raises(DACLError, match=r"data\.teacher"):
        module._losses((x, y))
    module.eval()  # evaluation batches carry no teacher: L_CE + λ·L_SC
    losses, _, _ = module._losses((x, y))
    assert "loss_kd" not in losses
    assert torch.allclose(losses["loss"], losses["loss_ce"] + 0.01 * losses["loss_sc"])
    with pytest.raises(DACLError, match=r"model\.distill\.weight must be in 0\.\.1"):
        DACLModule(distill={"weight": 1.5})
