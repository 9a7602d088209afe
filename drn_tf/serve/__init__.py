"""``drn serve``: DRN models behind KServe's Python model server (``kserve.ModelServer``).

* :mod:`drn_tf.serve.work`: the work of one request (encoded image -> ``drn upscale``'s PNG, uint8
  pixels -> ``drn_tf.upscale``'s pixels), its limits and deadline;
* :mod:`drn_tf.serve.protocol`: V1 (TF Serving REST bodies) and V2 (Open Inference Protocol) to work
  and back;
* :mod:`drn_tf.serve.model`: one model as a ``kserve.Model``;
* :mod:`drn_tf.serve.server`: the server, its additions to kserve's app, the drain on SIGTERM;
* :mod:`drn_tf.serve.ui`: the page at ``/``.

Nothing here is imported by ``import drn_tf``; kserve is the ``[serve]`` extra.
"""
