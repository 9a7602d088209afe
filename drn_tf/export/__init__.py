"""Exporters: SavedModel (TF Serving) and TFLite (float, float16, dynamic, full int8). TensorFlow only;
``drn export`` and ``converters/`` are thin wrappers."""
