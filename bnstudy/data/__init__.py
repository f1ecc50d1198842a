"""Data sets for the batch-size study, loaded whole into tensors (no DataLoader).

Two synthetic generators (:mod:`~bnstudy.data.synthetic`) need no files and are bit-for-bit
reproducible from a seed:

* ``synthetic2d``: CIFAR-shaped RGB images of ten shapes and textures.
* ``synthetic3d``: single-channel volumes of six 3D shapes, like small medical scans.

Both vary brightness, contrast and colour (or scanner gain and offset) from image to
image. That per-image intensity variation is the point: it is what statistics computed
per instance (InstanceNorm, GroupNorm) can remove and per-batch statistics (BatchNorm)
can only average over, so it is where small batches should hurt BatchNorm.

Four file loaders read real data (``data.root``), one module each:

* ``cifar10`` (:mod:`~bnstudy.data.cifar`): CIFAR-10 through ``torchvision.datasets.CIFAR10``
  from ``root/cifar-10-batches-py`` (``data.download`` fetches it where there is internet).
* ``medmnist3d`` (:mod:`~bnstudy.data.medmnist`): a MedMNIST v2 3D set (OrganMNIST3D,
  NoduleMNIST3D, ...) from its published ``.npz`` file, 28³ or the MedMNIST+ 64³ size; the
  file name says which set.
* ``imagefolder`` (:mod:`~bnstudy.data.imagefolder`): your own 2D images in
  ``root/train/<class>/`` and ``root/test/<class>/`` (``torchvision.datasets.ImageFolder``),
  resized to ``image_size`` and decoded once.
* ``npz`` (:mod:`~bnstudy.data.npz`): any ``x_train, y_train, x_test, y_test`` arrays, 2D or 3D.

A ``train_size``/``test_size`` below a split's size draws a class-balanced subset with
``data.seed`` from the three labelled sets (:func:`~bnstudy.data.files.balanced_subset`, with
the other helpers the loaders share); ``npz`` takes the first examples. Each loader's files
(``DatasetSpec.files``) are hashed into run identity. :mod:`~bnstudy.data.registry` names the
data sets (``DATASETS``), loads one (:func:`load_dataset`) and fingerprints its files.

Every loader returns splits standardized per channel with the train split's mean and
std (see ``_build_dataset`` in :mod:`~bnstudy.data.core`), so models never see raw
intensities. Random crops and flips in training are done on the device, batch by batch
(:mod:`bnstudy.augment`).

What the generators build in, and whom it favours: every synthetic image gets its own
contrast, brightness and per-channel gain (2D) or gain and offset (3D). On the single-channel
volumes of ``synthetic3d`` an InstanceNorm right after the first conv removes a per-volume
affine intensity change exactly, and nothing else does, so "only InstanceNorm learns" on
that data says little about BN. ``intensity="per_sample_zscore"`` normalizes each sample
(over its channels and pixels) before anything else, as real 3D pipelines z-score each
volume: it removes the per-sample offset and overall scale (not the per-channel gain of 2D
images) and leaves the label-carrying shape intact. Study both (configs/intensity.yaml).
"""

from bnstudy.data.core import Dataset, DatasetSpec, Split, per_sample_zscore, stream_seed
from bnstudy.data.files import balanced_subset
from bnstudy.data.registry import DATASETS, data_fingerprint, download_dataset, load_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "Split",
    "balanced_subset",
    "data_fingerprint",
    "download_dataset",
    "load_dataset",
    "per_sample_zscore",
    "stream_seed",
]
