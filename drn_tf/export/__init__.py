"""Exporters (SavedModel, TFLite float/int8) and the export report. TensorFlow only."""
