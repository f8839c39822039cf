"""Errors whose message is written for the editor: pages show `str(err)` as is."""
from typing import TypeVar

T = TypeVar("T")


class WorkbenchError(Exception):
    """Base class: a problem the user can understand and act on."""


class ValidationError(WorkbenchError):
    """Input is wrong; nothing was saved."""


class DuplicateError(ValidationError):
    """Something with the same identity exists already."""


class NotFoundError(WorkbenchError):
    """The row was deleted or never existed."""


class ConflictError(WorkbenchError):
    """Someone else saved first (optimistic locking); nothing was overwritten."""


class PermissionDenied(WorkbenchError):
    """The signed-in person's role does not allow this write; the message names the role it needs."""


class ImageRejected(ValidationError):
    """An upload or download is not an acceptable image."""


class FetchError(ValidationError):
    """A URL could not be fetched safely."""


def require(obj: T | None, message: str) -> T:
    """`obj` unless it is None (a row that was deleted or never existed): then NotFoundError(message)."""
    if obj is None:
        raise NotFoundError(message)
    return obj
