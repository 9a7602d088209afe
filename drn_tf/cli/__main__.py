"""``python -m drn_tf.cli``: the ``drn`` command."""

import sys

from drn_tf.cli.main import main

sys.exit(main())
