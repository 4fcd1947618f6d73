"""d2lutils: the small shared package of the Classic CNNs book.

Seed code runs with only its import changed::

    import d2lutils as d2l
    train_iter, test_iter = d2l.load_data_fashion_mnist(128, resize=224)
    d2l.train_ch5(net, train_iter, test_iter, 128, optimizer, device, 5)

Importing it runs nothing: no data is read and no device is touched.
"""

from .data import (
    TEXT_LABELS,
    CorruptDatasetError,
    DatasetNotFoundError,
    FashionMNISTIter,
    find_fashion_mnist,
    get_fashion_mnist_labels,
    load_data_fashion_mnist,
    read_fashion_mnist,
    resize_bilinear,
    show_fashion_mnist,
    show_images,
    upsample_bilinear,
)
from .layers import FlattenLayer, GlobalAvgPool2d
from .plot import LiveCurves, plot_history, plot_shapes, set_epoch_ticks
from .profile import PROFILES, Profile, get_profile
from .summary import LayerRow, LayerTable, count_params, layer_table
from .train import (
    History,
    TrainingDivergedError,
    device_name,
    evaluate_accuracy,
    load_checkpoint,
    save_checkpoint,
    set_seed,
    train_ch5,
    try_gpu,
)

__version__ = "0.1.0"

__all__ = [
    "TEXT_LABELS", "CorruptDatasetError", "DatasetNotFoundError", "FashionMNISTIter",
    "find_fashion_mnist", "get_fashion_mnist_labels", "load_data_fashion_mnist",
    "read_fashion_mnist", "resize_bilinear", "show_fashion_mnist", "show_images",
    "upsample_bilinear",
    "FlattenLayer", "GlobalAvgPool2d",
    "LiveCurves", "plot_history", "plot_shapes", "set_epoch_ticks",
    "PROFILES", "Profile", "get_profile",
    "LayerRow", "LayerTable", "count_params", "layer_table",
    "History", "TrainingDivergedError", "device_name", "evaluate_accuracy",
    "load_checkpoint", "save_checkpoint", "set_seed", "train_ch5", "try_gpu",
]
