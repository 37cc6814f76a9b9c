r"""Linear evaluation of a saved encoder: frozen features, a trained Dense classifier.

    python recipes/linear_eval.py --encoder=/tmp/run/encoder.keras --eval_epochs=20

The encoder is any `.keras` model mapping 0-255 images to features (every pretraining recipe
writes `<model_dir>/encoder.keras`). Exports the encoder + classifier as a SavedModel and
ends with one JSON line: the accuracy and the export path.
"""

import recipe_flags  # noqa: F401  First: configures TensorFlow's allocator before it starts.
import builders
import keras
import recipe_config
from absl import app
from absl import flags

import keras_contrast as kc

flags.DEFINE_string("encoder", None, "Path of the saved encoder (.keras).")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.encoder or not FLAGS.encoder.endswith(".keras"):
        raise ValueError(
            f"--encoder must be the path of a .keras file. Received: --encoder={FLAGS.encoder}"
        )
    config = recipe_config.config_from_flags("linear_eval")
    strategy = builders.set_up(config)
    train, validation, info = builders.load_splits(config)
    size = builders.image_size(config, info)
    with strategy.scope():
        encoder = keras.saving.load_model(FLAGS.encoder)
    accuracy, classifier = builders.linear_eval(
        config, strategy, encoder, train, validation, info, size=size
    )
    export_dir = kc.export.export_saved_model(classifier, config.export_dir, (size, size))
    builders.report(
        {
            "recipe": "linear_eval",
            "encoder": FLAGS.encoder,
            "dataset": config.dataset,
            "linear_eval_accuracy": accuracy,
            "eval_protocol": config.eval_protocol,
            "export_dir": export_dir,
        }
    )


if __name__ == "__main__":
    app.run(main)
