"""Training data: aligned LR/HR patch sampling (numpy, any backend) and its ``tf.data`` wrapper."""
