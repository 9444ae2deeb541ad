"""Errors the user can fix by changing the command line; the CLI prints them as one line and exits 2."""


class UsageError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""


class ConfigError(UsageError, ValueError):
    """A config value is out of range or not one of the allowed choices."""


class DeviceUnavailable(UsageError, RuntimeError):
    """The configured device does not exist on this machine."""


class DatasetUnavailable(UsageError, RuntimeError):
    """The dataset cannot be read or fetched."""
