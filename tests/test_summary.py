import matplotlib.pyplot as plt
import torch
from torch import nn

import d2lutils as d2l


def out(n, k, s=1, p=0):
    """Output side of a convolution or pooling: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * p - k) // s + 1


def seed000_alexnet():
    return nn.Sequential(
        nn.Conv2d(1, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(), nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2), d2l.FlattenLayer(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 10))


def test_alexnet_shapes_params_and_flops_by_hand():
    t = d2l.layer_table(seed000_alexnet(), (1, 1, 224, 224))
    s1 = out(224, 11, 4)            # 54
    p1 = out(s1, 3, 2)              # 26
    p2 = out(p1, 3, 2)              # 12
    p3 = out(p2, 3, 2)              # 5
    assert (s1, p1, p2, p3) == (54, 26, 12, 5)
    convs = [r for r in t.rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [
        (96, s1, s1), (256, p1, p1), (384, p2, p2), (384, p2, p2), (256, p2, p2)]
    pools = [r.output_shape for r in t.rows if r.type == "MaxPool2d"]
    assert pools == [(96, p1, p1), (256, p2, p2), (256, p3, p3)]
    assert t.rows[13].output_shape == (256 * p3 * p3,) and t.output_shape == (10,)
    conv_params = [(1, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
    fc_params = [(6400, 4096), (4096, 4096), (4096, 10)]
    want = sum(ci * co * k * k + co for ci, co, k in conv_params) + sum(i * o + o for i, o in fc_params)
    assert t.total_params == want == 46_764_746
    assert [r.params for r in convs] == [ci * co * k * k + co for ci, co, k in conv_params]
    # conv1: one multiply-add per output element and kernel tap = 2 FLOPs
    assert convs[0].flops == 2 * 96 * s1 * s1 * 1 * 11 * 11
    assert t.total_flops == sum(r.flops for r in t.rows)


def test_lenet_table_text_and_depth():
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                      nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2)),
        nn.Sequential(nn.Flatten(), nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84),
                      nn.Sigmoid(), nn.Linear(84, 10)))
    leaves = d2l.layer_table(net, (1, 1, 28, 28))
    assert [r.output_shape for r in leaves.rows][:6] == [
        (6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5)]
    assert leaves.total_params == 61_706
    stages = d2l.layer_table(net, (2, 1, 28, 28), depth=1)
    assert [r.name for r in stages.rows] == ["0", "1"]
    assert stages.rows[0].output_shape == (16, 5, 5) and stages.rows[1].params == 48120 + 10164 + 850
    assert stages.total_flops == leaves.total_flops  # per image, whatever the batch
    text = str(leaves)
    assert "16 x 5 x 5" in text and "total params: 61,706" in text
    assert text.splitlines()[0].split() == ["layer", "type", "output", "shape", "RF/jump", "params", "MFLOPs"]


def test_table_keeps_train_mode_and_plots():
    net = torch.nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))
    net.train()
    t = d2l.layer_table(net, (1, 1, 28, 28))
    assert net.training
    top, bottom = t.plot()
    assert top.get_ylabel() == "height = width (px)" and bottom.get_ylabel() == "channels / features"
    assert [b.get_height() for b in top.patches] == [28, 13, 13, 1, 1]
    assert [b.get_height() for b in bottom.patches] == [1, 4, 4, 676, 10]
    assert [l.get_text() for l in bottom.get_xticklabels()][:2] == ["input", "0 Conv2d"]
    plt.close("all")


def test_plot_history_single_and_compared():
    h = d2l.History(epoch=[1, 2], train_loss=[1.0, 0.5], train_acc=[0.6, 0.8], test_acc=[0.7, 0.75],
                    seconds=[1, 1], images_per_sec=[10, 10])
    ax_loss, ax_acc = d2l.plot_history(h)
    assert len(ax_loss.lines) == 1 and len(ax_acc.lines) == 2
    ax_loss, ax_acc = d2l.plot_history({"sigmoid": h, "relu": h})
    assert len(ax_acc.lines) == 4 and "sigmoid: test acc" in [t.get_text() for t in ax_acc.get_legend().texts]
    plt.close("all")


def test_plot_history_ticks_are_whole_epochs():
    one = d2l.History(epoch=[1], train_loss=[2.3], train_acc=[0.1], test_acc=[0.1],
                      seconds=[1], images_per_sec=[10])
    for ax in d2l.plot_history(one):
        assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.5, 1.5)
    many = d2l.History(epoch=list(range(1, 31)), train_loss=[1.0] * 30, train_acc=[0.5] * 30,
                       test_acc=[0.5] * 30, seconds=[1] * 30, images_per_sec=[10] * 30)
    for ax in d2l.plot_history(many):
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 30]
        assert ticks and all(float(t).is_integer() for t in ticks)
    _, ax = plt.subplots()
    d2l.set_epoch_ticks(ax, [3, 1, 2, 2])
    assert list(ax.get_xticks()) == [1, 2, 3] and ax.get_xlim() == (0.5, 3.5)
    plt.close("all")


def test_live_curves_redraw_one_figure(capsys):
    """Outside a notebook IPython's display prints a text repr; the figure is reused."""
    h = d2l.History(epoch=[1], train_loss=[1.0], train_acc=[0.5], test_acc=[0.6],
                    seconds=[1.0], images_per_sec=[10.0])
    live = d2l.LiveCurves()
    live.update(h)
    fig = live._fig
    h.epoch.append(2); h.train_loss.append(0.5); h.train_acc.append(0.7); h.test_acc.append(0.7)
    live.update(h)
    assert live._fig is fig and len(live._axes[0].lines) == 1 and len(live._axes[0].lines[0].get_xdata()) == 2
    live.close()
    assert not plt.fignum_exists(fig.number)


def test_show_fashion_mnist_titles_by_class():
    imgs = torch.rand(3, 1, 28, 28)
    d2l.show_fashion_mnist(imgs, torch.tensor([0, 5, 9]))
    titles = [ax.get_title() for ax in plt.gcf().axes]
    assert titles == ["t-shirt", "sandal", "ankle boot"]
    plt.close("all")


def test_receptive_fields_follow_the_recurrence():
    """r <- r + (k - 1) j, j <- j s: AlexNet's published fields (conv1 11, conv5 163, pool5 195),
    two stacked 3x3 = one 5x5, and a block with parallel paths takes its widest path."""
    from d2lutils import models

    t = d2l.layer_table(models.ALEXNET.net(), (1, 1, 224, 224))
    rf = {r.name: (r.rf, r.jump) for r in t.rows}
    assert rf["features.0"] == (11, 4) and rf["features.12"] == (163, 16) and rf["features.14"] == (195, 32)
    assert rf["classifier.1"] == (None, None) and t.last_conv_rf == 163
    assert "receptive field of the last convolution: 163 x 163" in str(t)
    stack = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1))
    assert d2l.layer_table(stack, (1, 1, 16, 16)).last_conv_rf == 5
    inc = d2l.layer_table(nn.Sequential(models.Inception(4, 2, (2, 2), (2, 2), 2)), (1, 4, 16, 16), depth=1)
    assert (inc.rows[0].rf, inc.rows[0].jump) == (5, 1) and inc.last_conv_rf == 5   # the 5x5 path
