"""Package layout for setuptools; all metadata lives in pyproject.toml.

Subpackages are found by discovery (``drn_tf`` and everything below it, so a
new ``drn_tf.<sub>`` package cannot be left out of the wheel). The bundled
trained models, their TFLite files (``assets/tflite/``) and the demo photo stay in
the checkout's top-level ``assets/`` (the design card's layout) and install as the package data
``drn_tf/assets/`` that ``drn_tf.core.utils.assets_dir`` finds. pyproject.toml
cannot combine package discovery with such a folder mapping, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["drn_tf", "drn_tf.*"]) + ["drn_tf.assets"],
    package_dir={"drn_tf.assets": "assets"},
    package_data={"drn_tf.assets": ["*.keras", "int8.json", "sample.jpg", "README.md", "tflite/*.tflite",
                                    "tflite/manifest.json"]},
)
