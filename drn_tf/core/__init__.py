"""The protocol layer, framework-free (numpy and Pillow only; never imports Keras, TensorFlow or JAX):
MATLAB bicubic, image reading/writing, the benchmark (LR, HR) pairs of the evaluation protocol, numpy
PSNR/SSIM, the tiling plan, small utilities."""
