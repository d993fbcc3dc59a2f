"""One error hierarchy for the whole library.

Categories are base classes (containerd's errdefs idea), so a caller can
``except NotFound`` across subsystems; concrete errors combine a subsystem
base with a category through multiple inheritance.

Every class carries a stable ``exit_code``; the CLI is the only place that
turns an error into a stderr line and that code.  ``message`` says what
failed, ``hint`` what to do about it.

    PyimgError
    ├─ InvalidArgument        bad reference, digest, media type, option   (exit 2)
    ├─ NotFound               image, blob, manifest, platform             (exit 3)
    ├─ AlreadyExists          idempotent callers swallow it               (exit 4)
    ├─ FailedPrecondition     wrong state, unsupported content            (exit 5)
    ├─ Unavailable            locked by another process, retry later      (exit 6)
    ├─ IntegrityError         digest or size mismatch                     (exit 7)
    │    ├─ DigestMismatch
    │    └─ SizeMismatch
    ├─ RegistryError          registry answered with an error             (exit 8)
    │    ├─ AuthenticationError  401 after answering the challenge        (exit 9)
    │    ├─ AuthorizationError   403 / DENIED                             (exit 9)
    │    ├─ RateLimited          429 after retries                        (exit 10)
    │    ├─ RegistryUnreachable  connection or TLS failure                (exit 11)
    │    ├─ ManifestUnknown(RegistryError, NotFound)
    │    └─ BlobUnknown(RegistryError, NotFound)
    ├─ ConfigError            a configuration file is malformed           (exit 12)
    ├─ CredentialHelperError  docker-credential-* failed                  (exit 13)
    ├─ UnpackError            a layer cannot be decompressed or applied   (exit 14)
    │    └─ UnsafeEntryError  a tar entry tries to escape the root
    ├─ CheckFailed            ``pyimg check``: an efficiency limit crossed (exit 15)
    └─ ContainerError         the runtime failed, not the container      (exit 125)
         ├─ StateTransitionError(ContainerError, FailedPrecondition)
         └─ LaunchError       init failed: .stage, .errno (126/127 at exec)
"""

from __future__ import annotations


class PyimgError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}: {self.hint}"
        return self.message


class InvalidArgument(PyimgError):
    exit_code = 2


class NotFound(PyimgError):
    exit_code = 3


class AlreadyExists(PyimgError):
    exit_code = 4


class FailedPrecondition(PyimgError):
    exit_code = 5


class Unavailable(PyimgError):
    exit_code = 6


class IntegrityError(PyimgError):
    exit_code = 7


class DigestMismatch(IntegrityError):
    pass


class SizeMismatch(IntegrityError):
    pass


class ConfigError(PyimgError):
    exit_code = 12


class CredentialHelperError(PyimgError):
    exit_code = 13


class RegistryError(PyimgError):
    """The registry answered, and the answer was an error.

    ``status`` is the HTTP status (0 when there was no answer), ``codes`` the
    distribution-spec error codes from the body (``MANIFEST_UNKNOWN``...),
    ``retryable`` whether trying again later may help.
    """

    exit_code = 8

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int = 0,
        codes: tuple[str, ...] = (),
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.codes = codes
        self.retryable = retryable
        self.retry_after = retry_after


class AuthenticationError(RegistryError):
    exit_code = 9


class AuthorizationError(RegistryError):
    exit_code = 9


class RateLimited(RegistryError):
    exit_code = 10


class RegistryUnreachable(RegistryError):
    exit_code = 11


class ManifestUnknown(RegistryError, NotFound):
    exit_code = 3


class BlobUnknown(RegistryError, NotFound):
    exit_code = 3


class UnpackError(PyimgError):
    """A layer could not be decompressed, parsed or written to disk."""

    exit_code = 14


class UnsafeEntryError(UnpackError):
    """A tar entry that would escape the root or corrupt the tree (hostile layer)."""

    def __init__(self, member: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"unsafe layer entry {member!r}: {reason}", hint=hint)
        self.member = member
        self.reason = reason


class CheckFailed(PyimgError):
    """``pyimg check`` found the image over one of the limits it was given."""

    exit_code = 15


class ContainerError(PyimgError):
    """A container could not be created, started, signalled or deleted.

    125 is docker's exit code for "the runtime failed", as opposed to the
    container's own exit status.
    """

    exit_code = 125


class StateTransitionError(ContainerError, FailedPrecondition):
    """An operation that the container's current status does not allow."""

    exit_code = 125

    def __init__(self, message: str, *, from_: str, to: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.from_ = from_
        self.to = to


class LaunchError(ContainerError):
    """The container's init failed before or at exec.

    ``stage`` names the step (``namespaces``, ``rootfs``, ``process``, ``exec``...),
    ``errno`` the C errno when the failure was a system call.  ``exit_code`` is
    126 when the command is not executable, 127 when it is not found (docker's
    conventions), 125 otherwise.
    """

    def __init__(self, message: str, *, stage: str, errno: int | None = None,
                 exit_code: int = 125, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.stage = stage
        self.errno = errno
        self.exit_code = exit_code
