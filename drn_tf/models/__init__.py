"""The network: layers, the DRN model, presets, Keras metrics, and the one function that decides which
model a command uses (:mod:`drn_tf.models.resolve`). Imports only :mod:`drn_tf.core` below it."""
