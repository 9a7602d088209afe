"""The training loop: ``model.fit``, or under ``MultiWorkerMirroredStrategy`` the same loop written with
``strategy.run``.

Keras 3's ``fit`` fails there before the first step (keras-team/keras#20585: its symbolic build reduces
the whole ``PerReplica`` input structure with ``strategy.reduce``, and its metric reduction uses
``axis=0`` on scalars), so :func:`custom_fit` runs ``strategy.run(model.train_step)`` in a
``tf.function``, metrics reduced with ``axis=None``, and the same callbacks (progress bar, validation,
CSV, TensorBoard, checkpoints) through a ``CallbackList``.
"""

from __future__ import annotations

import contextlib

# Grappler options of the train step's graph only (TensorFlow). The remapper fuses the convolutions with their
# bias in its first pass; in its second it fuses such a fused convolution with the LeakyReLU after it although
# the LeakyReLU's gradient still reads the pre-activation, fails ("remapper failed: INVALID_ARGUMENT:
# Mutation::Apply error: fanout '.../LeakyReluGrad' exist for missing node '.../conv_1/BiasAdd'") and logs
# that on every run. Without the remapper a float32 step took 1.6 % more CPU time here, a mixed_bfloat16 one
# 1.3 % less (tools/train_remapper.py, docs/training.md); validation, export and inference keep it.
TRAIN_STEP_GRAPPLER = {"remapping": False}


@contextlib.contextmanager
def grappler_options(options: dict):
    """TensorFlow's grappler ``options`` for the ``tf.function`` calls inside, the earlier values after: every
    call carries the options of its moment, so a function always called under them keeps its own graph."""
    import tensorflow as tf

    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({k: saved.get(k) for k in options})  # None: the default


def with_train_step_options(model) -> None:
    """``model.train_function`` (made now if needed) called under :data:`TRAIN_STEP_GRAPPLER` on TensorFlow."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    model.make_train_function()
    inner = model.train_function
    if getattr(inner, "_drn_grappler", False):
        return

    def train_function(iterator):
        with grappler_options(TRAIN_STEP_GRAPPLER):
            return inner(iterator)

    train_function._drn_grappler = True
    model.train_function = train_function


def fit_epochs(model, dataset, *, loop: str, strategy, first: int, last: int, steps_per_epoch: int, callbacks,
               verbose):
    """Train epochs ``[first, last)`` with ``loop`` (``fit`` or ``custom``); returns the History."""
    if loop == "fit":
        with_train_step_options(model)
        return model.fit(dataset, epochs=last, initial_epoch=first, steps_per_epoch=steps_per_epoch,
                         callbacks=callbacks, verbose=verbose, shuffle=False)
    return custom_fit(model, strategy, dataset, epochs=last, initial_epoch=first, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=verbose)


def custom_fit(model, strategy, dataset, *, epochs, initial_epoch, steps_per_epoch, callbacks, verbose):
    """``model.fit`` for a distributed dataset, written as a ``strategy.run`` loop.

    Same train step (``model.train_step``: loss, loss scaling, optimizer, EMA),
    same callbacks (including the progress bar and a History), same end
    (``optimizer.finalize_variable_values``). Works under every strategy;
    used where ``fit`` does not (``MultiWorkerMirroredStrategy``).
    """
    import keras
    import tensorflow as tf

    cbs = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
        steps=steps_per_epoch, model=model,
    )

    @tf.function(reduce_retracing=True)
    def train_fn(iterator):
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in outputs.items()}

    iterator = iter(dataset)
    model.stop_training = False
    cbs.on_train_begin()
    logs = {}
    epoch_logs = None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            cbs.on_train_batch_begin(step)
            with grappler_options(TRAIN_STEP_GRAPPLER):
                logs = train_fn(iterator)
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = {k: float(v) for k, v in logs.items()}
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    cbs.on_train_end(logs=epoch_logs)
    return model.history
