"""Start the Keras backend quietly, once: :func:`import_backend_quietly`.

Importing Keras/TensorFlow prints C-level start-up chatter on stderr (oneDNN
notices, ``failed call to cuInit``) that ``TF_CPP_MIN_LOG_LEVEL`` does not
reach, and pulls in optional packages the commands never use (matplotlib,
IPython, and JAX on the TensorFlow backend). Commands and the Beam pipeline call
:func:`import_backend_quietly` after checking their arguments, so a user error
stays one line and start-up stays short; ``DRN_VERBOSE=1`` shows everything.
"""

from __future__ import annotations

import contextlib
import os
import sys

from drn_tf.core.signals import _deferred_sigint

_BACKEND_STARTED = False


def _keras_backend_name() -> str:
    """The backend Keras will pick, without importing it (env, then keras.json)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as fh:
            return str(json.load(fh).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _optional_imports_of_keras() -> tuple[str, ...]:
    """Packages that Keras/TensorFlow import at start-up only if installed, for
    features the commands do not use: matplotlib (Keras's plotting helpers;
    ~0.3 s), IPython (Keras's notebook display; ~0.2 s) and, on the TensorFlow
    backend, JAX (TFLite's JAX converter; ~0.4 s). Commands that plot import
    matplotlib themselves, later; a package already imported is left alone."""
    names = ["matplotlib", "IPython"]
    if _keras_backend_name() == "tensorflow":
        names.append("jax")
    return tuple(n for n in names if n not in sys.modules)


@contextlib.contextmanager
def _unimportable(*names):
    """Make ``import NAME`` raise ImportError inside the block (what the
    importers above do when the package is not installed); afterwards the
    packages import normally again."""
    for name in names:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in names:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def import_backend_quietly():
    """Import Keras (and TensorFlow) and create the first tensor with the
    C-level start-up chatter on stderr silenced (oneDNN notices, ``failed
    call to cuInit`` on machines without a GPU: logs that
    ``TF_CPP_MIN_LOG_LEVEL`` does not reach), so commands keep their one-line
    error contract. Python exceptions still propagate. ``DRN_VERBOSE=1``
    shows everything."""
    global _BACKEND_STARTED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _BACKEND_STARTED:
        return
    _BACKEND_STARTED = True
    from drn_tf.core.utils import quiet_stderr

    with quiet_stderr(), _unimportable(*_optional_imports_of_keras()), _deferred_sigint():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
        keras.ops.zeros((1,))
