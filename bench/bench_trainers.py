"""Benchmark: step time of each trainer against a hand-written `train_step` doing the same maths.

Usage:

    python bench/bench_trainers.py                          # every row, 10 rounds x 2 steps
    python bench/bench_trainers.py --quick                  # every row, 4 rounds x 1 step
    python bench/bench_trainers.py --rows moco moco+both --steps 2 --rounds 10

Rows (`--rows`): `simclr`, `supcon` (in-batch, with labels), `supcon_queue`, `moco`, `byol`,
each alone and as `<base>+both` (with the `CLSA` and `MixCo` add-ons of
`keras_contrast.objectives`; the batches then carry one strong view), and `supcon_today`:
the new `SupConModel` against today's, the `SupConModel` of the previous release
(`git show cdb9da8:keras_contrast/models/supcon_model.py`, written to a temporary directory
and imported as a module, its Keras registration renamed so that it does not clash; the
working tree is not touched), both on `(views [B, 2, H, W, C], labels)` batches.

What runs: `ResNet(depth=18, width=16, image_shape=(32, 32, 3))`, the default heads
(`ProjectionHead()`, MLP 128-128, unit-norm output), except BYOL's head and predictor, which
are kept small: `ProjectionHead(128, hidden_dims=(512,), use_batch_norm=True,
normalize=False)` each (BYOL's default 4096-wide MLPs would dominate the step). Global batch
64, random 32x32 float32 views (values 0-255, the ResNet rescales) held in memory
(`tf.data.Dataset.from_tensors(batch).repeat()`), so the input pipeline costs nothing; labels
in 10 classes for the SupCon rows; queues of 4096 keys; SGD (lr 0.03, momentum 0.9),
`jit_compile=False`, float32, one device, no online probe (no `num_classes`). Temperatures:
SimCLR 0.5, SupCon 0.1, MoCo 0.2 (`shuffle_bn=True`, the default), CLSA 0.2, MixCo 0.05;
momentum 0.999 (SupCon queue), 0.99 (MoCo), 0.996 (BYOL).

The hand-written reference of each row is a `keras.Model` whose `train_step` is a gradient
tape around the same maths written out with the library's loss functions (`supcon_loss`,
`queue_supcon_loss`, `info_nce_loss`, `byol_loss`, `ddm_loss`, `mixco_loss`), then
`optimizer.apply_gradients`, the EMA update (`momentum_update`) and the enqueue
(`KeyQueue.enqueue`) where the base has them, a `Mean` of the loss and of `z_std` (the
collapse monitor every trainer computes). It runs the same encoder passes on the same
tensors as the trainer: SimCLR and in-batch SupCon encode both views in one concatenated
pass; MoCo shuffles the key view (one device: a local permutation), encodes it with the
momentum network and unshuffles; CLSA encodes each strong view once and compares it with
every contrast pair's key set; MixCo mixes each mixable pair's images (halves, `lam ~ U(0,
1)`) and encodes the mixed batch. Before timing, the script checks that the two compute the
same loss on one batch with the same weights (copied with `set_weights`; the same seed for
the shuffles and mixing weights): every term (total, base term, `ddm_loss`, `mixco_loss`)
and `z_std` of the hand-written step against the trainer's `compute_terms(...)`, and for
`supcon_today` the old model's total loss against the new one's. The largest difference is
reported as `max |loss diff|`; the row fails if it exceeds 1e-5 x max(1, |loss|). (The
differences seen are float32 round-off, <= 2e-6 on losses of 5-18, while two unrelated
initialisations differ by ~3e-4 on the SupCon rows, a random network's SupCon loss being
close to its uniform value: a looser bound would not catch weights that were not copied.)

How it is timed: every row runs in its own fresh subprocess, in which both models are built
and compared in the same process, interleaved. Each is warmed up with one `fit` call of 2
steps (tracing, first steps; not timed); then `--rounds` rounds (default 10) each run one
`fit(..., steps_per_epoch=--steps)` block (default 2 steps) of each model, in the order A B
in even rounds and B A in odd ones, so that the load of a shared machine, which comes and
goes, hits both alike. A block's time runs from `on_epoch_begin` to `on_epoch_end` (which
waits for the loss), divided by the steps. The table gives the median ms/step of each model
and `ratio`, the median over rounds of the paired ratio trainer / reference (hand-written,
or today's `SupConModel` for `supcon_today`), with the range of the per-round ratios, which
shows the noise; `CPU-time ratio` is the same median for the CPU time of the process
(`time.process_time()`), which other processes on the machine disturb less than wall time
(but which counts TensorFlow's threads' spinning). Ratios from one run on a shared machine
are indications, not assertions. `<= 5 %` reads the wall-time ratio, unless the per-round
ratios spread by more than 25 % (max / min > 1.25: other processes' load comes and goes
faster than the blocks alternate), in which case it reads the CPU-time ratio and says
`(CPU)`. `graph ops` counts the operations of each model's traced `train_step`
(`tf.function(model.train_step, autograph=False)`, as `fit` traces it: forward, gradients
and updates), what the trainer adds beyond the maths.
"""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from statistics import median

from _common import print_machine_line, repo_root

BATCH = 64
SIZE = 32
WIDTH = 16
NUM_CLASSES = 10
QUEUE_SIZE = 4096
LEARNING_RATE = 0.03
SIMCLR_TEMPERATURE = 0.5
SUPCON_TEMPERATURE = 0.1
MOCO_TEMPERATURE = 0.2
CLSA_TEMPERATURE = 0.2
MIXCO_TEMPERATURE = 0.05
SUPCON_MOMENTUM = 0.999
MOCO_MOMENTUM = 0.99
BYOL_MOMENTUM = 0.996
PREVIOUS_RELEASE = "cdb9da8"
TOLERANCE = 1e-5
NOISY_SPREAD = 1.25  # per-round wall ratios spread wider than this: read the CPU time
BASES = ("simclr", "supcon", "supcon_queue", "moco", "byol")
ROWS = tuple(r for base in BASES for r in (base, base + "+both")) + ("supcon_today",)


def worker(row, warmup_steps, steps, rounds, seed):
    """One row in this (fresh) process; prints a JSON line."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_contrast as kc

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    def images():
        return tf.constant(rng.integers(0, 256, (BATCH, SIZE, SIZE, 3)).astype("float32"))

    labels = tf.constant(rng.integers(0, NUM_CLASSES, BATCH).astype("int32"))
    base, _, add_ons = row.partition("+")
    with_add_ons = add_ons == "both"
    if row == "supcon_today":
        batch = (tf.stack([images(), images()], axis=1), labels)
        trainer = kc.models.SupConModel(
            resnet(kc), head=kc.models.ProjectionHead(),
            loss=kc.losses.SupConLoss(temperature=SUPCON_TEMPERATURE),
        )
        reference = previous_supcon_model()(
            encoder=resnet(kc), head=kc.models.ProjectionHead(),
            loss=kc.losses.SupConLoss(temperature=SUPCON_TEMPERATURE),
        )
        reference.build((None, SIZE, SIZE, 3))
        reference.encoder.set_weights(trainer.encoder.get_weights())
        reference.head.set_weights(trainer.head.get_weights())
        terms = {"loss": float(trainer.compute_terms(trainer.parse_batch(batch), True)[0]["loss"])}
        hand_terms = {"loss": float(reference._forward(*batch, training=True)[0])}
        diffs = {"loss": abs(terms["loss"] - hand_terms["loss"])}
    else:
        batch = {"query": images(), "key": images()}
        if with_add_ons:
            batch["strong"] = images()
        if base.startswith("supcon"):
            batch["labels"] = labels
        trainer = make_trainer(kc, base, with_add_ons, seed)
        reference = hand_written_classes()[base](with_add_ons, seed)
        reference.copy_from(trainer)
        terms, outputs = trainer.compute_terms(trainer.parse_batch(batch), training=True)
        hand_terms, hand_z, _ = reference.forward(batch, training=True)
        terms = {k: float(v) for k, v in terms.items()}
        hand_terms = {k: float(v) for k, v in hand_terms.items()}
        if sorted(terms) != sorted(hand_terms):
            raise AssertionError(
                f"Terms differ: trainer {sorted(terms)}, hand-written {sorted(hand_terms)}"
            )
        diffs = {k: abs(terms[k] - hand_terms[k]) for k in terms}
        diffs["z_std"] = abs(z_std(outputs.projections) - z_std(hand_z))
    shapes = [sorted(tuple(v.shape) for v in m.trainable_variables) for m in (trainer, reference)]
    if shapes[0] != shapes[1]:
        raise AssertionError("The two models do not train the same variables.")
    max_diff = max(diffs.values())
    if max_diff > TOLERANCE * max(1.0, abs(terms["loss"])):
        raise AssertionError(f"Hand-written and trainer disagree: {diffs}")
    for model in (trainer, reference):
        model.compile(
            optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), jit_compile=False
        )
    dataset = tf.data.Dataset.from_tensors(batch).repeat()

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.cpu_times = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # the epoch's work has finished
            self.times.append(time.perf_counter() - self.start)
            self.cpu_times.append(time.process_time() - self.cpu_start)

    timers = {"trainer": EpochTimer(), "reference": EpochTimer()}
    models = {"trainer": trainer, "reference": reference}
    warmup = {}
    for name in ("trainer", "reference"):
        models[name].fit(dataset, epochs=1, steps_per_epoch=warmup_steps, verbose=0,
                         callbacks=[timers[name]])
        warmup[name] = timers[name].times.pop()
        timers[name].cpu_times.pop()
    for round_index in range(rounds):
        order = ("trainer", "reference") if round_index % 2 == 0 else ("reference", "trainer")
        for name in order:
            models[name].fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                             callbacks=[timers[name]])
    ops = {name: graph_ops(tf, model, batch) for name, model in models.items()}
    print("RESULT " + json.dumps(dict(
        row=row,
        trainer_s=[t / steps for t in timers["trainer"].times],
        reference_s=[t / steps for t in timers["reference"].times],
        trainer_cpu_s=[t / steps for t in timers["trainer"].cpu_times],
        reference_cpu_s=[t / steps for t in timers["reference"].cpu_times],
        warmup_s=warmup, max_diff=max_diff, diffs=diffs, ops=ops,
    )))


def resnet(kc):
    return kc.models.ResNet(depth=18, width=WIDTH, image_shape=(SIZE, SIZE, 3))


def small_mlp(kc):
    """BYOL's head and predictor, narrowed (BYOL's default is 4096 wide, 256 out)."""
    return kc.models.ProjectionHead(128, hidden_dims=(512,), use_batch_norm=True, normalize=False)


def z_std(projections):
    import tensorflow as tf

    return float(tf.reduce_mean(tf.math.reduce_std(projections, axis=0)))


def graph_ops(tf, model, batch):
    """Operations in the traced `train_step` (forward, gradients, updates), or None."""
    try:
        graph = tf.function(model.train_step, autograph=False).get_concrete_function(batch).graph
        return len(graph.get_operations())
    except Exception as error:  # a diagnostic only: never fail the row for it
        print(f"graph_ops: {type(error).__name__}: {error}", file=sys.stderr)
        return None


def previous_supcon_model():
    """`SupConModel` of the previous release, loaded from git without touching the tree."""
    source = subprocess.run(
        ["git", "show", f"{PREVIOUS_RELEASE}:keras_contrast/models/supcon_model.py"],
        cwd=repo_root(), capture_output=True, text=True, check=True,
    ).stdout
    # Registering a second "keras_contrast>SupConModel" would raise; nothing else changes.
    source = source.replace(
        'package="keras_contrast"', f'package="keras_contrast_{PREVIOUS_RELEASE}"'
    )
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, f"supcon_model_{PREVIOUS_RELEASE}.py")
        with open(path, "w") as f:
            f.write(source)
        spec = importlib.util.spec_from_file_location(f"supcon_model_{PREVIOUS_RELEASE}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.SupConModel


def make_trainer(kc, base, with_add_ons, seed):
    add_ons = []
    if with_add_ons:
        add_ons = [
            kc.objectives.CLSA(temperature=CLSA_TEMPERATURE),
            kc.objectives.MixCo(temperature=MIXCO_TEMPERATURE),
        ]
    common = dict(add_ons=add_ons, seed=seed)
    if base == "simclr":
        return kc.models.SimCLRModel(resnet(kc), temperature=SIMCLR_TEMPERATURE, **common)
    if base == "supcon":
        return kc.models.SupConModel(
            resnet(kc), loss=kc.losses.SupConLoss(temperature=SUPCON_TEMPERATURE), **common
        )
    if base == "supcon_queue":
        return kc.models.SupConModel(
            resnet(kc), loss=kc.losses.SupConLoss(temperature=SUPCON_TEMPERATURE),
            queue_size=QUEUE_SIZE, momentum=SUPCON_MOMENTUM, **common,
        )
    if base == "moco":
        return kc.models.MoCoModel(
            resnet(kc), queue_size=QUEUE_SIZE, momentum=MOCO_MOMENTUM,
            temperature=MOCO_TEMPERATURE, **common,
        )
    if base == "byol":
        return kc.models.BYOLModel(
            resnet(kc), head=small_mlp(kc), predictor=small_mlp(kc), momentum=BYOL_MOMENTUM,
            **common,
        )
    raise ValueError(f"Unknown base {base!r}")


# -- the hand-written steps -----------------------------------------------------------------


def hand_written_classes():
    """`{base: keras.Model subclass}` of the hand-written steps (built in the worker only)."""
    import keras
    import tensorflow as tf

    import keras_contrast as kc
    from keras_contrast.losses import (
        byol_loss,
        ddm_loss,
        info_nce_loss,
        mixco_loss,
        queue_supcon_loss,
        supcon_loss,
    )
    from keras_contrast.models.momentum import (
        clone_momentum_encoder,
        clone_momentum_layer,
        momentum_pairs,
        momentum_update,
    )

    def l2_normalize(x):
        return tf.math.l2_normalize(tf.cast(x, "float32"), axis=-1)

    class HandWritten(keras.Model):
        """Tape, apply_gradients, `after(state)`, a Mean of the loss and of z_std."""

        momentum = None

        def __init__(self, with_add_ons, seed, head=None, momentum_network=False):
            super().__init__()
            self.encoder = resnet(kc)
            self.feature_dim = self.encoder.outputs[0].shape[-1]
            self.head = head if head is not None else kc.models.ProjectionHead()
            self.head.build((None, self.feature_dim))
            self.with_add_ons = with_add_ons
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.momentum_network = momentum_network
            if momentum_network:
                self.momentum_encoder = clone_momentum_encoder(self.encoder)
                self.momentum_head = clone_momentum_layer(self.head, (None, self.feature_dim))
                self._momentum_pairs = momentum_pairs(
                    self.encoder, self.momentum_encoder
                ) + momentum_pairs(self.head, self.momentum_head)
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.z_std_tracker = keras.metrics.Mean(name="z_std")
            self.built = True

        @property
        def metrics(self):
            return [self.loss_tracker, self.z_std_tracker]

        def copy_from(self, trainer):
            """The trainer's weights (and momentum network, queue) into this model."""
            self.encoder.set_weights(trainer.encoder.get_weights())
            self.head.set_weights(trainer.head.get_weights())
            if self.momentum_network:
                self.momentum_encoder.set_weights(trainer.momentum_encoder.get_weights())
                self.momentum_head.set_weights(trainer.momentum_head.get_weights())
            if getattr(self, "queue", None) is not None:
                self.queue.set_weights(trainer.queue.get_weights())

        def embed(self, images, training):
            return self.head(self.encoder(images, training=training), training=training)

        def momentum_embed(self, images, training):
            features = self.momentum_encoder(images, training=training)
            return tf.stop_gradient(self.momentum_head(features, training=training))

        def add_on_terms(self, data, pairs, training):
            """CLSA and MixCo on `pairs` = [(images, anchors, keys, weight)], positives i."""
            if not self.with_add_ons:
                return {}
            strong = self.embed(data["strong"], training)
            ddm = []
            for _, anchors, keys, weight in pairs:
                weak = tf.matmul(anchors, keys, transpose_b=True)
                strong_similarities = tf.matmul(strong, keys, transpose_b=True)
                ddm.append(weight * tf.reduce_mean(
                    ddm_loss(weak, strong_similarities, CLSA_TEMPERATURE)
                ))
            mixco = []
            for images, _, keys, _ in pairs:
                half = tf.shape(images)[0] // 2
                lam = tf.random.stateless_uniform([half], seed=self.seed_generator.next())
                lam_b = lam[:, None, None, None]
                mixed = lam_b * images[:half] + (1 - lam_b) * images[half : 2 * half]
                logits = tf.matmul(self.embed(mixed, training), keys, transpose_b=True)
                num_keys = tf.shape(keys)[0]
                targets = lam[:, None] * tf.one_hot(tf.range(half), num_keys) + (1.0 - lam)[
                    :, None
                ] * tf.one_hot(tf.range(half, 2 * half), num_keys)
                mixco.append(tf.reduce_mean(mixco_loss(targets, logits, MIXCO_TEMPERATURE)))
            return {"ddm_loss": tf.add_n(ddm), "mixco_loss": tf.add_n(mixco) / len(mixco)}

        def with_total(self, terms):
            # The add-ons' weights are their default, 1.
            terms["loss"] = tf.add_n(list(terms.values()))
            return terms

        def after(self, state):
            if self.momentum is not None:
                momentum_update(self._momentum_pairs, self.momentum)

        def train_step(self, data):
            with tf.GradientTape() as tape:
                terms, z, state = self.forward(data, training=True)
            variables = self.trainable_variables
            gradients = tape.gradient(terms["loss"], variables)
            self.optimizer.apply_gradients(zip(gradients, variables))
            self.after(state)
            self.loss_tracker.update_state(terms["loss"])
            self.z_std_tracker.update_state(tf.reduce_mean(tf.math.reduce_std(z, axis=0)))
            return {"loss": self.loss_tracker.result(), "z_std": self.z_std_tracker.result()}

    class HandSimCLR(HandWritten):
        temperature = SIMCLR_TEMPERATURE

        def forward(self, data, training):
            x1, x2 = data["query"], data["key"]
            batch = tf.shape(x1)[0]
            z = self.embed(tf.concat([x1, x2], axis=0), training)  # unit-norm rows
            z1, z2 = z[:batch], z[batch:]
            loss = supcon_loss(data.get("labels"), tf.stack([z1, z2], axis=1),
                               temperature=self.temperature)
            terms = {"contrastive_loss": tf.reduce_mean(loss)}
            pairs = [(x1, z1, z2, 0.5), (x2, z2, z1, 0.5)]
            terms.update(self.add_on_terms(data, pairs, training))
            return self.with_total(terms), z1, None

    class HandSupCon(HandSimCLR):
        temperature = SUPCON_TEMPERATURE

    class HandSupConQueue(HandWritten):
        momentum = SUPCON_MOMENTUM

        def __init__(self, with_add_ons, seed):
            super().__init__(with_add_ons, seed, momentum_network=True)
            self.queue = kc.models.KeyQueue(QUEUE_SIZE, self.head.output_dim, with_labels=True)

        def forward(self, data, training):
            x1, x2, labels = data["query"], data["key"], data["labels"]
            anchors = self.embed(x1, training)
            keys = self.momentum_embed(x2, training)
            key_set = tf.concat([keys, tf.convert_to_tensor(self.queue.queue)], axis=0)
            key_labels = tf.concat([labels, tf.convert_to_tensor(self.queue.labels)], axis=0)
            loss = queue_supcon_loss(labels, anchors, key_labels, key_set, SUPCON_TEMPERATURE)
            terms = {"contrastive_loss": tf.reduce_mean(loss)}
            terms.update(self.add_on_terms(data, [(x1, anchors, key_set, 1.0)], training))
            return self.with_total(terms), anchors, (keys, labels)

        def after(self, state):
            super().after(state)
            self.queue.enqueue(*state)

    class HandMoCo(HandWritten):
        momentum = MOCO_MOMENTUM

        def __init__(self, with_add_ons, seed):
            super().__init__(with_add_ons, seed, momentum_network=True)
            self.queue = kc.models.KeyQueue(QUEUE_SIZE, self.head.output_dim)

        def forward(self, data, training):
            x1, x2 = data["query"], data["key"]
            # Shuffle-BN on one device: a permutation of the key batch, undone on the keys.
            permutation = tf.argsort(
                tf.random.stateless_uniform([tf.shape(x2)[0]], seed=self.seed_generator.next())
            )
            keys = self.momentum_embed(tf.gather(x2, permutation), training)
            keys = tf.gather(keys, tf.math.invert_permutation(permutation))
            queue = tf.convert_to_tensor(self.queue.queue)
            q = self.embed(x1, training)
            terms = {"contrastive_loss": tf.reduce_mean(
                info_nce_loss(q, keys, queue, MOCO_TEMPERATURE)
            )}
            if self.with_add_ons:
                key_set = tf.concat([keys, queue], axis=0)
                terms.update(self.add_on_terms(data, [(x1, q, key_set, 1.0)], training))
            return self.with_total(terms), q, keys

        def after(self, state):
            super().after(state)
            self.queue.enqueue(state)

    class HandBYOL(HandWritten):
        momentum = BYOL_MOMENTUM

        def __init__(self, with_add_ons, seed):
            super().__init__(with_add_ons, seed, head=small_mlp(kc), momentum_network=True)
            self.predictor = small_mlp(kc)
            self.predictor.build((None, self.head.output_dim))

        def copy_from(self, trainer):
            super().copy_from(trainer)
            self.predictor.set_weights(trainer.predictor.get_weights())

        def embed(self, images, training):
            features = self.encoder(images, training=training)
            projection = self.head(features, training=training)
            return l2_normalize(self.predictor(projection, training=training))

        def momentum_embed(self, images, training):
            return l2_normalize(super().momentum_embed(images, training))

        def forward(self, data, training):
            x1, x2 = data["query"], data["key"]
            p1, p2 = self.embed(x1, training), self.embed(x2, training)
            t1, t2 = self.momentum_embed(x1, training), self.momentum_embed(x2, training)
            terms = {"byol_loss": tf.reduce_mean(byol_loss(t2, p1) + byol_loss(t1, p2))}
            pairs = [(x1, p1, t2, 1.0), (x2, p2, t1, 1.0)]
            terms.update(self.add_on_terms(data, pairs, training))
            return self.with_total(terms), p1, None

    return {
        "simclr": HandSimCLR,
        "supcon": HandSupCon,
        "supcon_queue": HandSupConQueue,
        "moco": HandMoCo,
        "byol": HandBYOL,
    }


# -- the driver ----------------------------------------------------------------------------


def run_one(row, warmup_steps, steps, rounds, seed):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", row, str(warmup_steps),
           str(steps), str(rounds), str(seed)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root())
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = out.stderr.strip().splitlines() or ["(no output)"]
    errors = [line for line in lines if "Error" in line]
    error = re.sub(r" \(defined @ [^)]*\)", "", (errors or lines)[-1]).strip()
    return {"error": error[:400]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, metavar="ROW",
                        help=f"rows to run, from {', '.join(ROWS)}; default all")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per timed fit block; default 2 (1 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed blocks of each model per row; default 10 (4 with --quick)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    parser.add_argument("--quick", action="store_true", help="4 rounds x 1 step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        row, warmup, steps, rounds, seed = args.worker
        worker(row, int(warmup), int(steps), int(rounds), int(seed))
        return
    steps = args.steps or (1 if args.quick else 2)
    rounds = args.rounds or (4 if args.quick else 10)
    results = {}
    for row in args.rows:
        r = run_one(row, args.warmup, steps, rounds, args.seed)
        results[row] = r
        if "error" in r:
            print(f"  {row:>18} FAILED: {r['error']}", file=sys.stderr)
            continue
        print(f"  {row:>18} trainer {median(r['trainer_s']) * 1e3:7.1f} ms/step, reference "
              f"{median(r['reference_s']) * 1e3:7.1f} ms/step, max |loss diff| "
              f"{r['max_diff']:.1e}", file=sys.stderr)
    print("| row | trainer | reference | trainer (ms/step) | reference (ms/step) "
          "| ratio | per-round ratios | CPU-time ratio | <= 5 % "
          "| graph ops (trainer / reference) | max \\|loss diff\\| |")
    print("|---|---|---|---:|---:|---:|---|---:|:---:|---:|---:|")
    for row in args.rows:
        r = results[row]
        base = row.partition("+")[0]
        names = {
            "simclr": "SimCLRModel", "supcon": "SupConModel", "supcon_queue":
            f"SupConModel(queue_size={QUEUE_SIZE})", "moco": "MoCoModel", "byol": "BYOLModel",
            "supcon_today": "SupConModel",
        }
        trainer = names[base] + (" + CLSA + MixCo" if row.endswith("+both") else "")
        reference = (f"SupConModel @ {PREVIOUS_RELEASE}" if row == "supcon_today"
                     else "hand-written")
        if "error" in r:
            print(f"| {row} | {trainer} | {reference} | failed | - | - | - | - | - | - | - |")
            continue
        t, h = median(r["trainer_s"]), median(r["reference_s"])
        ratios = [a / b for a, b in zip(r["trainer_s"], r["reference_s"])]
        cpu_ratio = median(a / b for a, b in zip(r["trainer_cpu_s"], r["reference_cpu_s"]))
        ops = r["ops"]
        ops_text = (f"{ops['trainer']} / {ops['reference']}"
                    if None not in (ops["trainer"], ops["reference"]) else "-")
        if max(ratios) / min(ratios) <= NOISY_SPREAD:
            verdict = "yes" if median(ratios) <= 1.05 else "no"
        else:  # the machine's load swamps the wall time: read the CPU time instead
            verdict = ("yes" if cpu_ratio <= 1.05 else "no") + " (CPU)"
        print(f"| {row} | {trainer} | {reference} | {t * 1e3:.1f} | {h * 1e3:.1f} "
              f"| {median(ratios):.3f} | {min(ratios):.2f}-{max(ratios):.2f} | {cpu_ratio:.3f} "
              f"| {verdict} | {ops_text} | {r['max_diff']:.1e} |")
    for row in args.rows:
        if "error" in results[row]:
            print(f"\nFailed: {row}: `{results[row]['error']}`")
    print(f"\nGlobal batch {BATCH}, ResNet-18 width {WIDTH}, 32x32, {rounds} rounds x {steps} "
          f"steps per model, interleaved in one process per row.")
    print_machine_line()


if __name__ == "__main__":
    main()
