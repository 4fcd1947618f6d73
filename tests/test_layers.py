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
