"""vecplug's exceptions: each message says what went wrong and what to do."""


class VecplugError(Exception):
    """Base class for every error vecplug raises on purpose."""


class UnknownModelError(VecplugError, LookupError):
    """A model name that no plugin registered and that is not a directory."""


class ModelNotAvailableError(VecplugError, FileNotFoundError):
    """A known model whose files are not on this machine and cannot be fetched."""


class ModelMismatchError(VecplugError, ValueError):
    """A collection or column made with one model, used with another."""


class InvalidSettingError(VecplugError, ValueError):
    """A device, dtype, dimensions or environment setting that cannot work here, refused before any work."""


class ModelFileError(VecplugError, ValueError):
    """A model file that is present but broken (a git-lfs pointer, truncated, NaN weights ...): names the file."""
