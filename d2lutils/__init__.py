"""d2lutils: the small shared package of the Classic CNNs book.

Seed code runs with only its import changed::

    import d2lutils as d2l
    train_iter, test_iter = d2l.load_data_fashion_mnist(128, resize=224)
    d2l.train_ch5(net, train_iter, test_iter, 128, optimizer, device, 5)

So does d2l-en's (``d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr,
d2l.try_gpu())``). Importing it runs nothing: no data is read and no device is touched.
"""

from .checkpoint import CheckpointLock, load_checkpoint, load_weights, read_checkpoint, run_record, save_checkpoint
from .compat import Animator, Timer, accuracy, evaluate_accuracy_gpu, size, train_ch6, try_all_gpus
from .data import (
    TEXT_LABELS,
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
from .diagram import draw_block, draw_net
from .export import export_onnx, fp16_rounded
from .errors import (
    ArgumentError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointLockedError,
    CheckpointMismatchError,
    CorruptDatasetError,
    D2LError,
    DatasetNotFoundError,
    DistributedError,
    InputSizeError,
    TrainingDivergedError,
)
from .layers import Conv2dWithoutOneDNN, FlattenLayer, GlobalAvgPool2d, LocalResponseNorm, with_layer_settings
from .notebook import callout, glue, report_peak_memory, timed
from .plot import LiveCurves, plot_history, plot_shapes, set_epoch_ticks
from .profile import PROFILES, Profile, get_profile, peak_memory_gb
from .recipe import Recipe
from .shapes import any_size_from, check_input, input_sizes, min_input_size, output_side, with_input_check
from .summary import LayerRow, LayerTable, count_params, layer_table
from .devices import Precision, amp_dtype, cpu_model, device_name, make_grad_scaler, precision_policy, set_seed, try_gpu
from .history import History
from .metrics import Accumulator, confusion_counts
from .train import evaluate_accuracy, train_ch5

__version__ = "0.2.0"

__all__ = [
    "CheckpointLock", "load_checkpoint", "load_weights", "read_checkpoint", "run_record",
    "save_checkpoint",
    "Accumulator", "Animator", "Timer", "accuracy", "confusion_counts", "evaluate_accuracy_gpu", "size", "train_ch6",
    "try_all_gpus",
    "TEXT_LABELS", "FashionMNISTIter", "find_fashion_mnist", "get_fashion_mnist_labels",
    "load_data_fashion_mnist", "read_fashion_mnist", "resize_bilinear", "show_fashion_mnist",
    "show_images", "upsample_bilinear",
    "draw_block", "draw_net",
    "export_onnx", "fp16_rounded",
    "ArgumentError", "CheckpointCorruptError", "CheckpointError", "CheckpointLockedError",
    "CheckpointMismatchError", "CorruptDatasetError", "D2LError", "DatasetNotFoundError",
    "DistributedError", "InputSizeError", "TrainingDivergedError",
    "Conv2dWithoutOneDNN", "FlattenLayer", "GlobalAvgPool2d", "LocalResponseNorm", "with_layer_settings",
    "callout", "glue", "report_peak_memory", "timed",
    "LiveCurves", "plot_history", "plot_shapes", "set_epoch_ticks",
    "PROFILES", "Profile", "get_profile", "peak_memory_gb",
    "Recipe",
    "any_size_from", "check_input", "input_sizes", "min_input_size", "output_side", "with_input_check",
    "LayerRow", "LayerTable", "count_params", "layer_table",
    "History", "amp_dtype", "cpu_model", "device_name", "evaluate_accuracy", "make_grad_scaler", "set_seed",
    "train_ch5", "try_gpu", "Precision", "precision_policy",
]
