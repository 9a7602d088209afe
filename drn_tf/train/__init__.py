"""Training behind ``drn train`` (TensorFlow and JAX): the engine (:mod:`drn_tf.train.engine`, its phases) and
one module per concern: config, recipe, placement, inputs, rundir and state, warmstart, callbacks, budget,
loop, summary."""
