"""keras_contrast.data: dataset sources and `tf.data` input pipelines.

Sources return `(dataset, info)`, `dataset` yielding `(image uint8 [H, W, 3], label int32)`
and `info` a `DatasetInfo`:

* `load(name, split, ...)`: `"cifar10_sample"`, `"folder:/path"` or a TFDS name.
* `tfds_source`, `folder_source` (and `folder_split_files`, `image_file_problem`),
  `cifar10_sample` (and `cifar10_sample_arrays`).

Pipelines: `build_pipeline` (shard, cache, shuffle, repeat, views, batch, prefetch) and
`distribute` (`strategy.distribute_datasets_from_function`), `per_replica_batch_size`.
"""

from keras_contrast.data.dispatch import load
from keras_contrast.data.folder import folder_source, folder_split_files, image_file_problem
from keras_contrast.data.info import DatasetInfo, DatasetNotPreparedError
from keras_contrast.data.pipeline import build_pipeline, distribute, per_replica_batch_size
from keras_contrast.data.sample import cifar10_sample, cifar10_sample_arrays
from keras_contrast.data.tfds_source import tfds_source
from keras_contrast.data.views import ViewMaker

__all__ = [
    "DatasetInfo",
    "DatasetNotPreparedError",
    "ViewMaker",
    "build_pipeline",
    "cifar10_sample",
    "cifar10_sample_arrays",
    "distribute",
    "folder_source",
    "folder_split_files",
    "image_file_problem",
    "load",
    "per_replica_batch_size",
    "tfds_source",
]
