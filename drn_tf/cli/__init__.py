"""The ``drn`` command: :mod:`drn_tf.cli.main.main.main` (entry point), :mod:`drn_tf.cli.main.main.base` (errors, signals)
and one module per subcommand in :mod:`drn_tf.cli.main.main.commands`."""
