"""The training engine behind ``drn train`` (TensorFlow and JAX): config, callbacks, checkpoints, resume."""
