"""`folder_source` and `load("folder:...")` on a folder of real JPEGs written by the test."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import data

CLASSES = ("zebra", "apple", "mango")  # Written unsorted: labels must follow sorted names.
PER_CLASS = 7


def _write_folder(root, sizes=None):
    """Writes PER_CLASS JPEGs per class; the pixels encode (class, index) for checks."""
    images, _, _ = data.cifar10_sample_arrays("validation")
    for c, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(PER_CLASS):
            image = images[c * 100 + i]
            if sizes is not None:
                image = tf.cast(tf.image.resize(image, sizes[i % len(sizes)]), tf.uint8)
            jpeg = tf.io.encode_jpeg(image, quality=95)
            tf.io.write_file(str(root / name / f"{i:03d}.jpg"), jpeg)
    (root / "apple" / "notes.txt").write_text("not an image")
    os.makedirs(root / ".hidden")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("images"))


def _files(dataset_root, split, **kwargs):
    paths, labels, names = data.folder_split_files(dataset_root, split, **kwargs)
    return [os.path.relpath(p, dataset_root) for p in paths], labels, names


def test_all_images_labels_and_metadata(folder):
    dataset, info = data.folder_source(folder, "all")
    assert info.class_names == ("apple", "mango", "zebra")
    assert info.num_classes == 3 and info.num_examples == 3 * PER_CLASS
    assert info.image_shape == (32, 32, 3)
    assert info.name == f"folder:{folder}"
    pairs = [(x.numpy(), int(y)) for x, y in dataset]
    assert len(pairs) == 3 * PER_CLASS
    assert all(x.dtype == np.uint8 and x.shape == (32, 32, 3) for x, _ in pairs)
    # Labels follow sorted class names: the first 'apple' file is CLASSES[1]'s image 0.
    source, _, _ = data.cifar10_sample_arrays("validation")
    first_apple = [x for x, y in pairs if y == 0][0]
    assert np.abs(first_apple.astype(int) - source[100].astype(int)).mean() < 8
    assert np.bincount([y for _, y in pairs]).tolist() == [PER_CLASS] * 3


def test_validation_split_is_last_n_per_class_deterministic_and_disjoint(folder):
    train, train_labels, _ = _files(folder, "train", validation_per_class=2)
    val, val_labels, _ = _files(folder, "validation", validation_per_class=2)
    assert val == [f"{c}/{i:03d}.jpg" for c in sorted(CLASSES) for i in (5, 6)]
    assert len(train) == 3 * 5 and not set(train) & set(val)
    assert sorted(train + val) == sorted(_files(folder, "all")[0])
    assert (train, train_labels) == _files(folder, "train", validation_per_class=2)[:2]
    assert val_labels == [0, 0, 1, 1, 2, 2]
    # The datasets hold exactly those images.
    dataset, info = data.folder_source(folder, "validation", validation_per_class=2)
    assert info.num_examples == 6 and "validation" in info.splits
    assert [int(y) for _, y in dataset] == val_labels


def test_validation_fraction(folder):
    val, _, _ = _files(folder, "validation", validation_fraction=0.3)  # round(2.1) = 2
    assert len(val) == 6 and val[0] == "apple/005.jpg"


def test_load_dispatches_folder_with_shuffle_and_shard(folder):
    dataset, info = data.load(f"folder:{folder}", "train", validation_per_class=2,
                              shuffle_files=True, seed=3)
    labels = sorted(int(y) for _, y in dataset)
    assert labels == sorted([0] * 5 + [1] * 5 + [2] * 5)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    shard, info = data.load(f"folder:{folder}", "all", input_context=context)
    assert len(list(shard)) == (3 * PER_CLASS) // 2
    assert info.num_examples == 3 * PER_CLASS


def test_mixed_sizes_and_image_size(tmp_path):
    root = _write_folder(tmp_path, sizes=[(40, 30), (24, 24)])
    dataset, info = data.folder_source(root, "all")
    assert info.image_shape == (40, 30, 3)  # First images of every class agree.
    # Images of another size are resized to it (0.1.0 yielded them as they were, and
    # batching failed mid-training): the dataset's static shape is the info's.
    assert dataset.element_spec[0].shape == (40, 30, 3)
    images = [x.numpy() for x, _ in dataset]
    assert {x.shape for x in images} == {(40, 30, 3)}
    # Exact pixels: file 000 is decoded as it is, file 001 (24x24) is resized by TensorFlow's
    # antialiased bilinear resize and rounded.
    decoded = [tf.io.decode_jpeg(tf.io.read_file(str(root / "apple" / f"00{i}.jpg")))
               for i in (0, 1)]
    np.testing.assert_array_equal(images[0], decoded[0].numpy())
    expected = tf.image.resize(decoded[1], (40, 30), method="bilinear", antialias=True)
    expected = np.clip(np.round(expected.numpy()), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(images[1], expected)
    dataset, info = data.folder_source(root, "all", image_size=(16, 20))
    assert info.image_shape == (16, 20, 3)
    assert dataset.element_spec[0].shape == (16, 20, 3)
    assert {tuple(x.shape) for x, _ in dataset} == {(16, 20, 3)}


def test_png_and_grayscale(tmp_path):
    os.makedirs(tmp_path / "a")
    gray = tf.cast(tf.reshape(tf.range(64), (8, 8, 1)) * 3, tf.uint8)
    tf.io.write_file(str(tmp_path / "a" / "x.PNG"), tf.io.encode_png(gray))
    dataset, info = data.folder_source(tmp_path, "all")
    image, label = next(iter(dataset))
    assert image.shape == (8, 8, 3) and int(label) == 0
    np.testing.assert_array_equal(image.numpy()[..., 0], image.numpy()[..., 2])
    np.testing.assert_array_equal(image.numpy()[..., 0], gray.numpy()[..., 0])


def test_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="`path` must be an existing folder"):
        data.folder_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="no sub-folders"):
        data.folder_source(tmp_path)
    with pytest.raises(ValueError, match="needs `validation_per_class`"):
        data.folder_source(folder, "validation")
    with pytest.raises(ValueError, match="leaves none for training"):
        data.folder_source(folder, "train", validation_per_class=PER_CLASS)
    with pytest.raises(ValueError, match="only one of"):
        data.folder_source(folder, validation_per_class=1, validation_fraction=0.1)
    with pytest.raises(ValueError, match="validation_per_class=-1"):
        data.folder_source(folder, validation_per_class=-1)
    with pytest.raises(ValueError, match="validation_fraction=1.5"):
        data.folder_source(folder, validation_fraction=1.5)
    with pytest.raises(ValueError, match="`split` must be one of"):
        data.folder_source(folder, "test")
    with pytest.raises(ValueError, match="image_size=0"):
        data.folder_source(folder, image_size=0)
    with pytest.raises(ValueError, match="`data_dir` does not apply to folder"):
        data.load(f"folder:{folder}", data_dir="/x")


def _image_bytes(fmt, size=(6, 5)):
    """A small RGB image encoded by Pillow (an independent encoder) in `fmt`."""
    import io

    from PIL import Image

    pixels = (np.arange(size[0] * size[1] * 3).reshape(size[0], size[1], 3) * 7) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, truncated_reason", [
    ("JPEG", "truncated JPEG (no end-of-image marker)"),
    ("PNG", "truncated PNG (no IEND chunk)"),
    ("GIF", "truncated GIF (no trailer)"),
    ("BMP", "truncated BMP"),
])
def test_image_file_problem(tmp_path, fmt, truncated_reason):
    whole = _image_bytes(fmt)
    good, cut = tmp_path / "good.img", tmp_path / "cut.img"
    good.write_bytes(whole)
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    assert data.image_file_problem(str(good)) is None
    # TensorFlow decodes the good file (whatever its name) and fails on the truncated one.
    decode = lambda b: tf.io.decode_image(b, channels=3, expand_animations=False)  # noqa: E731
    assert decode(whole).shape == (6, 5, 3)
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode(whole[: len(whole) * 2 // 3])
    assert data.image_file_problem(str(cut)).startswith(truncated_reason)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert data.image_file_problem(str(tmp_path / "empty.jpg")) == "empty file"
    (tmp_path / "text.jpg").write_text("<html>404</html>")
    assert data.image_file_problem(str(tmp_path / "text.jpg")) == (
        "not a JPEG, PNG, GIF or BMP image")


def _folder_with_bad_files(root):
    """3 classes x 7 JPEGs, of which 3 are damaged; plus entries that are not images."""
    _write_folder(root)
    whole = (root / "mango" / "002.jpg").read_bytes()
    (root / "mango" / "002.jpg").write_bytes(whole[: len(whole) // 2])  # truncated copy
    (root / "zebra" / "004.jpg").write_bytes(b"")
    (root / "zebra" / "006.jpg").write_text("<html>404</html>")
    (root / "zebra" / ".DS_Store").write_bytes(b"x")
    os.symlink(root / "missing.jpg", root / "zebra" / "link.jpg")  # a broken link
    return root


def test_bad_images_are_named_before_any_decoding(tmp_path):
    root = _folder_with_bad_files(tmp_path)
    message = (r"3 of the 21 files of split 'all' of .* are not readable images: "
               r"mango/002.jpg: truncated JPEG \(no end-of-image marker\); "
               r"zebra/004.jpg: empty file; zebra/006.jpg: not a JPEG, PNG, GIF or BMP image\. "
               r".*on_bad_image='skip'")
    with pytest.raises(ValueError, match=message):
        data.folder_source(root, "all")
    with pytest.raises(ValueError, match=message):
        data.load(f"folder:{root}", "all", on_bad_image="error")
    # The held-out split is checked on its own files: zebra/006 is in the last two.
    with pytest.raises(ValueError, match=r"1 of the 6 files of split 'validation'"):
        data.folder_source(root, "validation", validation_per_class=2)


def test_bad_images_skipped_with_a_warning_and_counted(tmp_path):
    root = _folder_with_bad_files(tmp_path)
    with pytest.warns(UserWarning, match=r"Leaving out 3 of the 21 files .*mango/002.jpg"):
        dataset, info = data.folder_source(root, "all", on_bad_image="skip")
    assert info.num_examples == 18
    labels = [int(y) for _, y in dataset]  # every kept file decodes
    assert np.bincount(labels).tolist() == [7, 6, 5]
    assert info.skipped == (("other files", 1), ("hidden", 2), ("broken links", 1),
                            ("unreadable images", 3))
    assert info.summary() == (
        f"folder:{root} all: 18 images, 3 classes, 32x32 (left out: 1 other files, "
        "2 hidden, 1 broken links, 3 unreadable images)")


def test_entries_that_are_not_images_are_counted(folder):
    _, info = data.folder_source(folder, "all")
    # notes.txt and the .hidden folder of `_write_folder`.
    assert info.skipped == (("other files", 1), ("hidden", 1))
    assert info.summary().endswith("21 images, 3 classes, 32x32 (left out: 1 other files, "
                                   "1 hidden)")


def test_bad_image_policy_errors(folder):
    with pytest.raises(ValueError, match=r"`on_bad_image` must be one of \('error', 'skip'\)"
                                         r". Received: on_bad_image='ignore'"):
        data.folder_source(folder, on_bad_image="ignore")
    with pytest.raises(ValueError, match="`on_bad_image` does not apply to the cifar10_sample"):
        data.load("cifar10_sample", on_bad_image="skip")
