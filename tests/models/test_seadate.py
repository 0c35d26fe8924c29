import pytest
import torch

from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.complexity import count_macs, count_parameters
from torchgeo_ext.models.seadate import (
    ContrastiveAlignment,
    DualAttentionFusion,
    SeaDATE,
    seadate_yolov5s,
    two_stream_yolov5s,
)


def small(**kwargs: object) -> SeaDATE:
    torch.manual_seed(0)
    return seadate_yolov5s(num_classes=2, width=0.25, **kwargs)  # type: ignore[arg-type]


class TestSeaDATE:
    def test_shapes(self) -> None:
        model = small()
        x = torch.rand(2, 4, 64, 96)
        raw = model(x)
        assert raw.shape == (2, 3, 16, 24, 7)
        raw2, losses = model.forward_with_losses(x)
        assert raw2.shape == raw.shape
        assert set(losses) == {'contrast'}
        model.eval()
        with torch.no_grad():
            decoded = model(x)
        assert decoded.shape == (2, 3 * 16 * 24, 7)
        assert model.bands == [0, 1, 2, 3]
        assert model.sr is None

    def test_band_groups(self) -> None:
        model = seadate_yolov5s(1, rgb_bands=(3, 4, 5), ir_bands=(0,), width=0.25)
        assert model.bands == [3, 4, 5, 0]
        assert model(torch.rand(1, 6, 32, 32)).shape == (1, 3, 8, 8, 6)
        # the unused bands do not matter
        model.eval()
        x = torch.rand(1, 6, 32, 32)
        y = x.clone()
        y[:, 1:3] = 0
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(y))
        with pytest.raises(ValueError, match='non-empty'):
            SeaDATE(1, rgb_bands=(), ir_bands=(3,))

    def test_both_fusion_modules_active(self) -> None:
        model = small()
        assert isinstance(model.fuse1, DualAttentionFusion)
        assert isinstance(model.fuse2, DualAttentionFusion)
        assert isinstance(model.contrast, ContrastiveAlignment)
        calls: list[str] = []
        for name in ('fuse1', 'fuse2', 'contrast'):
            getattr(model, name).register_forward_hook(
                lambda m, i, o, name=name: calls.append(name)
            )
        raw, losses = model.forward_with_losses(torch.rand(2, 4, 64, 64))
        (raw.sigmoid().mean() + losses['contrast']).backward()
        assert calls == ['fuse1', 'fuse2', 'contrast']
        # every branch of both DTF modules and both contrastive heads learn
        for name in (
            'fuse1.spatial.attn.qkv.weight',
            'fuse1.channel.attn.qkv.weight',
            'fuse1.local.conv.weight',
            'fuse1.branch_weights',
            'fuse2.spatial.mlp.0.weight',
            'fuse2.channel.mlp.0.weight',
            'contrast.rgb_head.0.weight',
            'contrast.ir_head.2.weight',
        ):
            grad = model.get_parameter(name).grad
            assert grad is not None, name
            assert grad.abs().sum() > 0, name

    def test_contrastive_loss_reaches_both_streams(self) -> None:
        model = small()
        _, losses = model.forward_with_losses(torch.rand(2, 4, 64, 64))
        loss = losses['contrast']
        assert torch.isfinite(loss)
        assert loss > 0
        loss.backward()
        for stream in ('rgb', 'ir'):
            grad = model.get_parameter(f'{stream}.stage3.0.conv.weight').grad
            assert grad is not None
            assert grad.abs().sum() > 0
        # the detection head gets nothing from it
        assert model.get_parameter('detect.conv.weight').grad is None

    def test_baseline(self) -> None:
        torch.manual_seed(0)
        model = two_stream_yolov5s(num_classes=2, width=0.25)
        assert model.fuse1 is None
        assert model.fuse2 is None
        assert model.contrast is None
        raw, losses = model.forward_with_losses(torch.rand(1, 4, 32, 32))
        assert losses == {}
        assert raw.shape == (1, 3, 8, 8, 7)
        # the same network but the two modules
        sea = {n for n, _ in small().named_parameters()}
        base = {n for n, _ in model.named_parameters()}
        assert base < sea
        assert {n.split('.')[0] for n in sea - base} == {'fuse1', 'fuse2', 'contrast'}

    def test_fuse_for_inference(self) -> None:
        model = small().eval()
        x = torch.rand(1, 4, 32, 32)
        with torch.no_grad():
            before = model(x)
            model.fuse()
            after = model(x)
        assert model.contrast is None
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)

    def test_size_at_640(self) -> None:
        sea = seadate_yolov5s(num_classes=1)
        base = two_stream_yolov5s(num_classes=1)
        assert count_parameters(sea) == pytest.approx(11.02e6, rel=0.01)
        assert count_parameters(base) == pytest.approx(9.53e6, rel=0.01)
        macs = count_macs(sea, input_shape=(1, 4, 640, 640))
        assert macs.gmacs == pytest.approx(43.3, rel=0.03)

    def test_registry(self) -> None:
        sea = get_model('seadate_yolov5s', num_classes=3, width=0.25, temperature=0.2)
        assert isinstance(sea, SeaDATE)
        assert sea.contrast is not None
        assert sea.contrast.temperature == 0.2
        # the ablation switches
        no_dtf = get_model('seadate_yolov5s', width=0.25, dual_attention=False)
        assert no_dtf.fuse1 is None
        assert no_dtf.contrast is not None
        no_cl = get_model('seadate_yolov5s', width=0.25, contrast_weight=0.0)
        assert no_cl.fuse1 is not None
        assert no_cl.contrast is None
        base = get_model('two_stream_yolov5s', num_classes=3, width=0.25)
        assert isinstance(base, SeaDATE)
        assert base.contrast is None


class TestDualAttentionFusion:
    def test_relates_places_across_modalities(self) -> None:
        # Global attention: IR at one corner changes the RGB output at the other.
        torch.manual_seed(0)
        dtf = DualAttentionFusion(32, grid=4).eval()
        rgb, ir = torch.rand(1, 32, 32, 32), torch.rand(1, 32, 32, 32)
        ir2 = ir.clone()
        ir2[..., :8, :8] += 1.0
        with torch.no_grad():
            a, _, fused_a = dtf(rgb, ir)
            b, _, fused_b = dtf(rgb, ir2)
        far = (slice(None), slice(None), slice(24, 32), slice(24, 32))
        assert (a[far] - b[far]).abs().max() > 1e-3
        torch.testing.assert_close(fused_a, a + dtf(rgb, ir)[1])
        assert fused_a.shape == fused_b.shape == (1, 32, 32, 32)

    def test_any_size(self) -> None:
        dtf = DualAttentionFusion(16, grid=8)
        rgb, ir, fused = dtf(torch.rand(2, 16, 12, 20), torch.rand(2, 16, 12, 20))
        assert rgb.shape == ir.shape == fused.shape == (2, 16, 12, 20)


class TestContrastiveAlignment:
    def test_aligned_pairs_score_lower(self) -> None:
        torch.manual_seed(0)
        cl = ContrastiveAlignment(16, dim=8, grid=2)
        cl.ir_head.load_state_dict(cl.rgb_head.state_dict())
        feats = torch.randn(4, 16, 8, 8)
        aligned = cl(feats, feats)
        shuffled = cl(feats, feats.roll(1, dims=0))
        assert aligned < shuffled
        # positives are the same region of the same image
        z_rgb, z_ir = cl.embed(feats, feats)
        assert z_rgb.shape == (4 * 2 * 2, 8)
        torch.testing.assert_close(z_rgb, z_ir)
        torch.testing.assert_close(z_rgb.norm(dim=1), torch.ones(16))

    def test_batch_of_one_has_negatives(self) -> None:
        cl = ContrastiveAlignment(8, grid=4)
        loss = cl(torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8))
        assert torch.isfinite(loss)
        loss.backward()
        assert cl.ir_head[0].weight.grad is not None
