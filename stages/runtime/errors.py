"""Errors a user can fix. Stage entry points print them without a traceback."""


class UserError(Exception):
    """Bad input: the message names the file/key/row, what was found and what was expected."""


class ConfigError(UserError):
    """params.yaml is unreadable or does not validate against the schema."""


class DataError(UserError):
    """The input data cannot be used as configured."""
