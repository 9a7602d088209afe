"""One module per ``drn`` subcommand (or a package of its parts, ``upscale``): ``add_parser(sub, help_text)`` and
``run(args)``."""
