"""Running a model: whole-image/tiled upscaling, runtimes (Keras, LiteRT), benchmark evaluation,
batch files and the Apache Beam pipeline."""
