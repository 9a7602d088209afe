"""The ``drn`` command: :mod:`drn_tf.cli.main` (entry point, ``python -m drn_tf.cli``), :mod:`drn_tf.cli.base`
(:class:`~drn_tf.cli.base.UserError`) and one module per subcommand in :mod:`drn_tf.cli.commands`."""
