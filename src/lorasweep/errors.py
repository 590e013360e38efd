"""The one error type for bad user input: the CLI turns it into a message and exit code 2."""


class UserError(Exception):
    """Bad input (config, data file, predictions, run directory). ``where`` is a key or file:line."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(UserError):
    """A study config key is unknown, mistyped or impossible."""
