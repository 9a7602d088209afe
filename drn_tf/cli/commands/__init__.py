"""One module per ``drn`` subcommand: ``add_parser(sub, help_text)`` and ``run(args)``."""
