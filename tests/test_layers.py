import torch
import torch.nn.functional as F
from torch import nn

import d2lutils as d2l


def test_flatten_matches_nn_flatten():
    X = torch.randn(3, 4, 5, 6)
    assert torch.equal(d2l.FlattenLayer()(X), nn.Flatten()(X))
    assert d2l.FlattenLayer()(X).shape == (3, 120)


def test_global_avg_pool_matches_the_seed_and_the_mean():
    X = torch.randn(2, 10, 5, 7)
    out = d2l.GlobalAvgPool2d()(X)
    assert out.shape == (2, 10, 1, 1)
    torch.testing.assert_close(out, F.avg_pool2d(X, kernel_size=X.size()[2:]))  # the seeds' form
    torch.testing.assert_close(out.flatten(1), X.mean(dim=(2, 3)))


def test_upsample_bilinear_equals_interpolate():
    torch.manual_seed(0)
    X = torch.rand(3, 2, 28, 28)
    for f in (1, 2, 3, 4, 5, 8):
        want = F.interpolate(X, scale_factor=f, mode="bilinear", align_corners=False)
        got = d2l.upsample_bilinear(X, f)
        assert got.shape == want.shape == (3, 2, 28 * f, 28 * f)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)  # weights like 1/3 round differently


def test_resize_bilinear_equals_interpolate():
    """Every path of resize_bilinear against F.interpolate: integer factor, any other
    enlargement (two matrix products), and shrinking (antialiased, as torchvision's Resize)."""
    torch.manual_seed(0)
    X = torch.rand(3, 2, 28, 28)
    for size in (28, 224, 96, (40, 100), 14, (20, 60)):
        h, w = (size, size) if isinstance(size, int) else size
        want = F.interpolate(X, size=(h, w), mode="bilinear", align_corners=False,
                             antialias=h < 28 or w < 28)
        got = d2l.resize_bilinear(X, size)
        assert got.shape == want.shape == (3, 2, h, w)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
