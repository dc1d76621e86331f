"""vecplug's exceptions: each message says what went wrong and what to do."""


class VecplugError(Exception):
    """Base class for every error vecplug raises on purpose."""


class UnknownModelError(VecplugError, LookupError):
    """A model name that no plugin registered and that is not a directory."""


class ModelNotAvailableError(VecplugError, FileNotFoundError):
    """A known model whose files are not on this machine and cannot be fetched."""


class ModelMismatchError(VecplugError, ValueError):
    """A collection or column made with one model, used with another."""


class ServerError(VecplugError):
    """A ``vecplug serve`` server refused a request; the message is the server's, with its URL."""

    def __init__(self, message: str, url: str = "", status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class ServerUnavailableError(ServerError, ConnectionError):
    """A server that did not answer (refused, busy or loading) for longer than the client's retry time."""


class InvalidSettingError(VecplugError, ValueError):
    """A device, dtype, dimensions or environment setting that cannot work here, refused before any work."""


class ModelFileError(VecplugError, ValueError):
    """A model file that is present but broken (a git-lfs pointer, truncated, NaN weights ...): names the file."""
