"""Running a model: the runtime interface and its engines (Keras, LiteRT, SavedModel), the runtime
table, whole-image/tiled upscaling, benchmark evaluation, batch files and the Apache Beam pipeline."""
