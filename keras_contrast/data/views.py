"""`ViewMaker`: the batched view function of every contrastive trainer."""

import numbers

import tensorflow as tf

from keras_contrast.layers.pipelines import CLSA_CROPS
from keras_contrast.layers.pipelines import clsa_strong_pipeline
from keras_contrast.layers.pipelines import weak_pipeline
from keras_contrast.seeds import derive_seeds

_CROP_KINDS = ("single", "multi")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate_crops(name, value):
    message = (
        f"`{name}` must be a sequence of `(crop_size, (min_scale, max_scale))` pairs, "
        "with crop_size an int >= 1 and 0 < min_scale <= max_scale <= 1. "
        f"Received: {name}={value!r}"
    )
    if not isinstance(value, (tuple, list)):
        raise ValueError(message)
    crops = []
    for entry in value:
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ValueError(message)
        crop_size, crop_scale = entry
        if not _is_int(crop_size) or crop_size < 1:
            raise ValueError(message)
        if (
            not isinstance(crop_scale, (tuple, list))
            or len(crop_scale) != 2
            or not all(_is_real(v) for v in crop_scale)
            or not 0 < crop_scale[0] <= crop_scale[1] <= 1
        ):
            raise ValueError(message)
        crops.append((int(crop_size), (float(crop_scale[0]), float(crop_scale[1]))))
    return tuple(crops)


class ViewMaker:
    """Makes the views of a batch of images for the contrastive trainers.

    Two weak views (`keras_contrast.layers.weak_pipeline`: the SimCLR / MoCo-v2
    augmentation: random resized crop to `size`, color jitter, grayscale, optional blur,
    horizontal flip) under `"query"` and `"key"`, and, for each entry
    `(crop_size, crop_scale)` of `strong_crops`, one CLSA strong view
    (`keras_contrast.layers.clsa_strong_pipeline`: the weak view cropped to `crop_size`
    with area scale `crop_scale`, followed by `StrongAugment`) under `"strong"`. Each entry
    of `weak_crops` adds one more weak query crop of its side and scale: `"query"` is then
    the tuple `(query, *weak crops)` (CLSA's multi-crop, which `MoCoModel` contrasts crop by
    crop against the key; the other trainers take one query view). Every
    pipeline, and every random layer inside it, has its own independent seed derived from
    `seed` (`keras_contrast.seeds.derive_seeds`), so the views of one image are
    statistically independent, and a seeded maker is reproducible.

    Called on a batch `[B, H, W, C]` (`uint8` or float, values in `value_range`) it
    returns

    ```python
    {
        "query": float32 [B, size, size, C],
        "key": float32 [B, size, size, C],
        "strong": float32 [B, crop_size, crop_size, C]  # one strong crop, or a tuple
                                                        # of them (several crops)
    }
    ```

    (with `weak_crops`, `"query"` is a tuple of the `[B, size, size, C]` query and the
    `[B, crop_size, crop_size, C]` weak crops).

    `"strong"` is left out without `strong_crops`; with several it is a tuple (not a
    list: `tf.data` would stack a list). The trainers `SimCLRModel`, `SupConModel`,
    `MoCoModel` and `BYOLModel` (`keras_contrast.models`) consume exactly this dict, with
    the labels either as the dataset's second element (`(views, labels)`, what
    `build_pipeline` yields) or under `"labels"` in the dict.

    Use it as the batched `view_fn` of `keras_contrast.data.build_pipeline`
    (`view_fn_batched=True`; the layers vectorise over the batch), or call it eagerly.
    For batches that are the same on every run, also pass `deterministic=True` to
    `build_pipeline`, so that the seeded layers draw in a fixed order.

    Args:
        size: side of the weak views, an int >= 1.
        strong_crops: the strong views, a sequence of `(crop_size, crop_scale)` pairs,
            `crop_size` an int >= 1 and `crop_scale` the `(min, max)` area scale of its
            random resized crop, `0 < min <= max <= 1`; e.g. `ViewMaker.clsa_crops(size,
            "single")` or `"multi"` (CLSA's five crops). Defaults to `()` (no strong view).
        blur: whether the pipelines include the Gaussian blur (SimCLR drops it on
            CIFAR-sized images). Defaults to `True`.
        scale: `(min, max)` area scale of the weak views' random resized crop.
            Defaults to `(0.2, 1.0)`.
        value_range: `(min, max)` value range of the input images, kept by the views.
            Defaults to `(0, 255)`.
        seed: `None` (unseeded) or an int >= 0. Defaults to `None`.
        weak_crops: extra weak query crops, `(crop_size, crop_scale)` pairs as
            `strong_crops`; e.g. `ViewMaker.clsa_crops(size, "multi")[1:]` for CLSA's
            five weak crops (the query is the first). Defaults to `()`.

    Attributes:
        query_pipeline: the `keras.Sequential` making `"query"`.
        key_pipeline: the `keras.Sequential` making `"key"`.
        strong_pipelines: the list of `keras.Sequential` making the strong crops, in the
            order of `strong_crops`.
        weak_crop_pipelines: the list of `keras.Sequential` making the extra weak query
            crops, in the order of `weak_crops`.

    Example:

    ```python
    dataset, info = keras_contrast.data.load("cifar10_sample", "train")
    maker = ViewMaker(32, strong_crops=ViewMaker.clsa_crops(32, "multi"), seed=0)
    train = keras_contrast.data.build_pipeline(
        dataset, batch_size=64, view_fn=maker, view_fn_batched=True, seed=0)
    views, labels = next(iter(train))
    views["query"].shape  # (64, 32, 32, 3)
    [crop.shape[1] for crop in views["strong"]]  # [32, 27, 23, 18, 14]
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709) (SimCLR views),
          [Chen et al., 2020](https://arxiv.org/abs/2003.04297) (MoCo-v2 views),
          [Wang & Qi, 2021](https://arxiv.org/abs/2104.07713) (CLSA strong views).
    """

    def __init__(
        self,
        size,
        strong_crops=(),
        blur=True,
        scale=(0.2, 1.0),
        value_range=(0, 255),
        seed=None,
        weak_crops=(),
    ):
        if not _is_int(size) or size < 1:
            raise ValueError(f"`size` must be an int >= 1. Received: size={size!r}")
        if not isinstance(blur, bool):
            raise ValueError(f"`blur` must be True or False. Received: blur={blur!r}")
        crops = _validate_crops("strong_crops", strong_crops)
        weak = _validate_crops("weak_crops", weak_crops)
        # Prefix-stable: adding weak crops keeps the seeds of the other pipelines.
        seeds = derive_seeds(seed, 2 + len(crops) + len(weak))
        self.size = int(size)
        self.strong_crops = crops
        self.weak_crops = weak
        self.blur = blur
        self.scale = scale
        self.value_range = value_range
        self.seed = seed
        self.query_pipeline = weak_pipeline(
            self.size, scale=scale, value_range=value_range, blur=blur, seed=seeds[0]
        )
        self.key_pipeline = weak_pipeline(
            self.size, scale=scale, value_range=value_range, blur=blur, seed=seeds[1]
        )
        self.strong_pipelines = [
            clsa_strong_pipeline(
                crop_size,
                scale=crop_scale,
                value_range=value_range,
                blur=blur,
                seed=crop_seed,
            )
            for (crop_size, crop_scale), crop_seed in zip(crops, seeds[2:])
        ]
        self.weak_crop_pipelines = [
            weak_pipeline(
                crop_size, scale=crop_scale, value_range=value_range, blur=blur, seed=crop_seed
            )
            for (crop_size, crop_scale), crop_seed in zip(weak, seeds[2 + len(crops):])
        ]

    @staticmethod
    def clsa_crops(size, kind):
        """CLSA's strong crops for views of side `size`, as `strong_crops`.

        Args:
            size: side of the weak views, an int >= 1.
            kind: `"single"`: the strong crop of CLSA's single-crop run (its reference's
                `--size_crops 224 96 --min_scale_crops 0.2 0.086 --max_scale_crops 1.0
                0.429 --pick_strong 1`): the 96-px crop of 224 with scale
                `(0.086, 0.429)`, scaled to `size`; `"multi"`: the five crops of
                `keras_contrast.layers.CLSA_CROPS` (ImageNet sides 224, 192, 160, 128, 96)
                scaled to `size`, with the paper's scales. Each side is
                `max(8, round(size * side / 224))`.

        Returns:
            A tuple of `(crop_size, (min_scale, max_scale))` pairs.

        Example:

        ```python
        ViewMaker.clsa_crops(32, "single")  # ((14, (0.086, 0.429)),)
        [side for side, _ in ViewMaker.clsa_crops(32, "multi")]  # [32, 27, 23, 18, 14]
        ```
        """
        if not _is_int(size) or size < 1:
            raise ValueError(f"`size` must be an int >= 1. Received: size={size!r}")
        crops = {"single": CLSA_CROPS[-1:], "multi": CLSA_CROPS}.get(kind)
        if crops is not None:
            return tuple(
                (max(8, round(size * side / 224)), tuple(crop_scale))
                for side, crop_scale in crops
            )
        raise ValueError(f"`kind` must be one of {_CROP_KINDS}. Received: kind={kind!r}")

    def __call__(self, images):
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(
                "`images` must be a batch of images [batch, height, width, channels]. "
                f"Received: images.shape={images.shape}"
            )
        query = tf.cast(self.query_pipeline(images, training=True), tf.float32)
        if self.weak_crop_pipelines:
            query = (query,) + tuple(
                tf.cast(pipeline(images, training=True), tf.float32)
                for pipeline in self.weak_crop_pipelines
            )
        views = {
            "query": query,
            "key": tf.cast(self.key_pipeline(images, training=True), tf.float32),
        }
        if self.strong_pipelines:
            crops = tuple(
                tf.cast(pipeline(images, training=True), tf.float32)
                for pipeline in self.strong_pipelines
            )
            views["strong"] = crops[0] if len(crops) == 1 else crops
        return views

    def get_config(self):
        return {
            "size": self.size,
            "strong_crops": self.strong_crops,
            "blur": self.blur,
            "scale": self.scale,
            "value_range": self.value_range,
            "seed": self.seed,
            "weak_crops": self.weak_crops,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
