"""Exporters: SavedModel (TF Serving) and TFLite (float, float16, dynamic, full int8), and the table of the
forms a model is exported in (``formats``). TensorFlow only; ``drn export`` and ``converters/`` are thin
wrappers."""
