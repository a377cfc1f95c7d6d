"""Errors that mean "the user asked for something impossible": the entries print them as one line, exit 2."""


class UserError(Exception):
    """Bad input found before any work started (config value, missing data, missing checkpoint)."""
