"""What every ``drn`` subcommand shares with the entry point: :class:`UserError` (one line, exit 2)."""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""
