"""DACLNet: the architecture of method.md §1 and pretrained trunk loading."""

import logging
import pickle

import pytest
import torch

from dacl import DACLError, DACLNet
from dacl.model import trunk_output_size


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_at_200px_equal_spec_table():
    net = DACLNet(num_classes=7, image_size=200)
    assert n_params(net.trunk) == 11_176_512
    linear_bn = [n_params(m) for m in net.encoder if n_params(m)]
    assert linear_bn == [89_918_976, 7_168, 1_835_520, 1_024, 32_832, 128]
    assert n_params(net.heads) == 66_560
    assert n_params(net.classifier) == 3_591


@pytest.mark.parametrize(("size", "width"), [(200, 25_088), (224, 25_088), (48, 2_048)])
def test_ce_unit_width_follows_image_size(size, width):
    assert DACLNet(image_size=size).encoder[0].in_features == width
    assert trunk_output_size(size) ** 2 * 512 == width


def test_parameter_counts_of_method_md_with_both_stems():
    """method.md §1 and §1.2: RGB stem, and the gray stem the FER2013 recipes use."""
    for size, rgb, gray in [(200, 103_042_311, 103_036_039), (48, 20_466_951, 20_460_679)]:
        assert n_params(DACLNet(image_size=size)) == rgb
        assert n_params(DACLNet(image_size=size, in_chans=1)) == gray


def test_the_attention_gradient_reaches_the_trunk_through_the_ce_unit():
    """method.md §1.1: x* is not detached before the CE-Unit, so L_SC's attention term (here
    with the features held fixed) trains the trunk too."""
    torch.manual_seed(0)
    net = DACLNet(image_size=48)
    _, f, a = net(torch.randn(4, 3, 48, 48))
    (a * (f.detach() - 1).pow(2)).sum().backward()
    grad = net.trunk.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_forward_shapes_and_attention_range():
    net = DACLNet(image_size=48).eval()
    logits, f, a = net(torch.randn(3, 3, 48, 48))
    assert logits.shape == (3, 7) and f.shape == (3, 512) and a.shape == (3, 512)
    assert torch.all(a > 0) and torch.all(a < 1)
    # features are an average of post-ReLU activations
    assert torch.all(f >= 0)


def test_linear_layers_kaiming_normal_with_zero_bias():
    net = DACLNet(image_size=48)
    w = net.encoder[3].weight  # 3584 -> 512: fan_in 3584
    assert torch.count_nonzero(net.encoder[3].bias) == 0
    assert w.std().item() == pytest.approx((2 / 3584) ** 0.5, rel=0.05)
    assert torch.count_nonzero(net.heads.fc.bias) == 0


def test_classifier_keeps_pytorch_default_linear_init():
    torch.manual_seed(0)
    fc = DACLNet(image_size=48).classifier
    bound = 1 / 512**0.5  # nn.Linear: U(-1/√fan_in, 1/√fan_in) for weight and bias
    assert fc.weight.abs().max().item() <= bound
    assert fc.weight.abs().max().item() > 0.95 * bound  # uniform up to the bound, not normal
    assert fc.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    assert torch.count_nonzero(fc.bias) == fc.bias.numel()
    assert fc.bias.abs().max().item() <= bound


def test_gray_stem_init_is_the_rgb_init_summed_over_channels():
    torch.manual_seed(0)
    stem = DACLNet(image_size=48, in_chans=1).trunk.conv1.weight
    # three Kaiming fan_out slices N(0, 2/3136) summed: std √(6/3136)
    assert stem.std().item() == pytest.approx((6 / (64 * 7 * 7)) ** 0.5, rel=0.15)
    torch.manual_seed(0)
    rgb = DACLNet(image_size=48, in_chans=3).trunk.conv1.weight
    torch.testing.assert_close(stem, rgb.sum(1, keepdim=True))


def test_without_attention_the_weights_are_ones_and_no_ce_unit_exists():
    net = DACLNet(image_size=48, attention=1.0)
    assert net.encoder is None and net.heads is None
    _, f, a = net.eval()(torch.randn(2, 3, 48, 48))
    assert torch.equal(a, torch.ones_like(f))


def test_gray_stem_equals_rgb_stem_on_replicated_gray_input():
    torch.manual_seed(0)
    rgb = DACLNet(image_size=48).eval()
    gray = DACLNet(image_size=48, in_chans=1).eval()
    state = rgb.state_dict()
    state["trunk.conv1.weight"] = state["trunk.conv1.weight"].sum(1, keepdim=True)
    gray.load_state_dict(state)
    x = torch.rand(4, 1, 48, 48)
    for out_rgb, out_gray in zip(rgb(x.expand(-1, 3, -1, -1)), gray(x), strict=True):
        torch.testing.assert_close(out_gray, out_rgb, rtol=1e-4, atol=1e-5)
    # a 1-channel batch into the 3-channel net is replicated, not rejected
    torch.testing.assert_close(rgb(x)[0], rgb(x.expand(-1, 3, -1, -1))[0])
    # and a replicated 3-channel batch into the gray net reads one channel
    torch.testing.assert_close(gray(x.expand(-1, 3, -1, -1))[0], gray(x)[0])


def _trunk_checkpoint(tmp_path, net):
    state = {f"module.{k}": v for k, v in net.trunk.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(10, 512)  # a face-ID head the trunk does not have
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def test_pretrained_checkpoint_with_module_prefix_loads_and_reports_count(tmp_path, caplog):
    source = DACLNet(image_size=48)
    path = _trunk_checkpoint(tmp_path, source)
    with caplog.at_level(logging.INFO, logger="dacl"):
        net = DACLNet(image_size=48, pretrained=str(path))
    n_trunk = len(source.trunk.state_dict())
    assert f"loaded {n_trunk}/{n_trunk} trunk tensors" in caplog.text
    for key, value in source.trunk.state_dict().items():
        assert torch.equal(net.trunk.state_dict()[key], value)


def test_pretrained_rgb_stem_is_folded_into_gray_stem(tmp_path):
    source = DACLNet(image_size=48)
    net = DACLNet(image_size=48, in_chans=1, pretrained=str(_trunk_checkpoint(tmp_path, source)))
    expected = source.trunk.conv1.weight.sum(1, keepdim=True)
    torch.testing.assert_close(net.trunk.conv1.weight, expected)


def test_unrelated_file_gives_clear_error(tmp_path):
    path = tmp_path / "bert.pt"
    torch.save({"encoder.layer.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(DACLError, match=r"no tensor in '.*bert.pt' matches the ResNet-18 trunk"):
        DACLNet(image_size=48, pretrained=str(path))


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": _RunsCode()}))
    with pytest.raises(DACLError, match=r"refused to load .*evil\.pth"):
        DACLNet(image_size=48, pretrained=str(path))


def test_missing_weights_file_names_what_to_supply(tmp_path):
    with pytest.raises(DACLError, match=r"'.*nope.pth' not found: supply .* --model.pretrained"):
        DACLNet(image_size=48, pretrained=str(tmp_path / "nope.pth"))


def test_imagenet_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(DACLError, match=r"resnet18-.*\.pth.* not in the local torch cache"):
        DACLNet(image_size=48, pretrained="imagenet")
    # once the file is in the cache folder it is used
    source = DACLNet(image_size=48)
    (tmp_path / "checkpoints").mkdir()
    from torchvision.models import ResNet18_Weights

    name = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.save(source.trunk.state_dict(), tmp_path / "checkpoints" / name)
    net = DACLNet(image_size=48, pretrained="imagenet")
    assert torch.equal(net.trunk.conv1.weight, source.trunk.conv1.weight)


def test_small_input_trunk_drops_the_max_pool():
    net = DACLNet(image_size=48, small_input=True)
    assert "maxpool" not in dict(net.trunk.named_children())
    assert trunk_output_size(48, small_input=True) == 3
    assert net.encoder[0].in_features == 512 * 3 * 3
    logits, _, a = net.eval()(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, 7) and a.shape == (2, 512)


def test_compact_trunk_shapes_counts_and_one_parameter_group():
    net = DACLNet(image_size=44, in_chans=1, trunk="compact")
    logits, f, a = net(torch.randn(3, 1, 44, 44))
    assert logits.shape == (3, 7) and f.shape == (3, 192) and a.shape == (3, 192)
    # 44 → 22 (stem) → 22 → 11 → 6 → 3: the CE-Unit reads 192·3·3 values
    assert net.encoder[0].in_features == 192 * 3 * 3
    assert sum(p.numel() for p in net.trunk.parameters()) == 690_120
    assert net.num_params() == 1_439_055
    # its gray stem is its own, not a folded RGB stem: no 3x learning-rate group
    assert len(net.param_groups(0.1, 5e-4)) == 1
    assert len(DACLNet(image_size=44, in_chans=1).param_groups(0.1, 5e-4)) == 2


@pytest.mark.parametrize("trunk", ["resnet18", "compact"])
def test_folding_the_batchnorms_keeps_the_outputs_and_halves_the_layers(trunk):
    torch.manual_seed(0)
    net = DACLNet(image_size=44, in_chans=1, trunk=trunk)
    net.train()
    for _ in range(3):  # running statistics away from their init
        net(torch.randn(8, 1, 44, 44) * 2 + 0.5)
    with pytest.raises(DACLError, match="eval"):
        net.fold_batchnorms()
    net.eval()
    x = torch.randn(4, 1, 44, 44)
    with torch.no_grad():
        before = net(x)
        count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.trunk.modules())
        after = net.fold_batchnorms()(x)
    assert count > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.trunk.modules())
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
