"""Domain errors: every failure a user can cause or meet, in one place.

The CLI turns a :class:`FunnelError` into one line on stderr and a non-zero exit; the HTTP
service turns it into a JSON body with :attr:`FunnelError.http_status`.
"""

from __future__ import annotations


class FunnelError(Exception):
    """Base class: a failure with a message a user can act on."""

    http_status = 400


class BadInputError(FunnelError):
    """Arguments or options that cannot be used (bad k, bad dims, bad name, …)."""


class InvalidPlanError(BadInputError):
    """A funnel plan that does not parse or does not fit the collection."""


class InvalidLayoutError(BadInputError):
    """A storage layout (``funnel calibrate --layouts``) that does not parse or does not fit the collection."""


class InvalidDimsError(BadInputError):
    """A dim ladder that is not ascending or goes above the model's dim."""


class InvalidFilterError(BadInputError):
    """A payload filter on an unknown field, or with a value of the wrong type."""


class CorpusError(BadInputError):
    """A corpus that cannot be read: missing, unreadable, malformed, empty or not UTF-8."""


class ModelLoadError(FunnelError):
    """A model name or path that cannot be loaded offline."""


class EncoderError(FunnelError):
    """An encoder backend that is not installed here, or a fast-encoder export that cannot be made or loaded."""


class ModelMismatchError(FunnelError):
    """A model (or ladder, or chunking) other than the one that built the collection."""

    http_status = 409


class CollectionNotFoundError(FunnelError):
    """No collection of that name in the data directory."""

    http_status = 404


class ChunkNotFoundError(FunnelError):
    """No chunk with that document id and index in the collection."""

    http_status = 404


class DocumentNotFoundError(FunnelError):
    """No document with that id in the collection (a delete of it changes nothing)."""

    http_status = 404


class CollectionLockedError(FunnelError):
    """The embedded collection is open in another process (single-writer lock)."""

    http_status = 423


class StoreError(FunnelError):
    """The engine failed in a way that is not the caller's fault."""

    http_status = 500


class StorageUnavailableError(StoreError):
    """The disk is full, or read-only, or refuses access: the stored data is not damaged (nothing to
    delete or rebuild); the storage must be fixed, then the same command run again."""

    http_status = 507


class DamagedCalibrationError(StoreError):
    """A collection's calibration record that cannot be read as one: not JSON, nested too deeply, too
    large, or not a JSON object. Searches do not fail on it: the record's readers
    (:func:`retriever.calibration.record.read_record`) fall back to the uncalibrated defaults and
    say so with a :class:`CalibrationWarning`. ``what`` says what is wrong, without the collection."""

    def __init__(self, name: str, location: str, what: str) -> None:
        super().__init__(f"collection {name!r}: damaged calibration record {location}: {what}")
        self.what = what


class CalibrationWarning(UserWarning):
    """A collection's calibration record is damaged (the message names it and what is wrong): its
    damaged parts are not used, searches run with the uncalibrated defaults instead. ``funnel
    calibrate`` replaces the record."""


class CopyConflictError(FunnelError):
    """A copy (``funnel collections copy``) into a collection that is neither empty nor a part of the
    source (an interrupted copy of it): refused before anything is written."""

    http_status = 409


class InPlaceUnsupportedError(FunnelError):
    """Replacing a collection in place (``funnel calibrate --apply``) on an engine that cannot swap one atomically."""

    http_status = 409


class ServerUnavailableError(StoreError):
    """The Qdrant server cannot be reached, or keeps failing, after bounded retries."""

    http_status = 503


class ServerAuthError(StoreError):
    """The Qdrant server refused funnel's API key (funnel's configuration, not the caller's)."""

    http_status = 502


class ServerVersionError(StoreError):
    """A Qdrant server too old for what funnel needs (the Query API, collection metadata)."""

    http_status = 502


class ForeignCollectionError(FunnelError):
    """A server collection funnel did not create: no funnel spec, or not funnel's named vectors."""

    http_status = 409


class TuneError(BadInputError):
    """Training data, evaluation data, output or checkpoint that cannot be used for tuning."""


class PairsError(BadInputError):
    """Input for ``funnel pairs`` that cannot be used: output path, prompt file, feedback log, options."""


class LLMError(FunnelError):
    """The LLM server could not be reached or kept failing after the bounded retries."""

    http_status = 502


class OutOfMemoryError(FunnelError):
    """The device ran out of memory; the message says which option to lower."""

    http_status = 507


class PayloadTooLargeError(FunnelError):
    """A request body above the service's size limit."""

    http_status = 413


class UnauthorizedError(FunnelError):
    """A missing or wrong API key."""

    http_status = 401


class NotReadyError(FunnelError):
    """The service is still loading its model or collection."""

    http_status = 503


def error_type(exc: FunnelError) -> str:
    """A stable snake_case code for an error class: ``InvalidPlanError`` → ``invalid_plan``."""
    return _code(type(exc).__name__)


# --- Calling a funnel service over HTTP (retriever.service.client) and optional integrations ------------------
# The client raises the classes above for the service's own error types (a 401 ``unauthorized`` is an
# UnauthorizedError, a 400 ``invalid_plan`` an InvalidPlanError), so a caller handles a remote search
# the way it handles an in-process one; these cover what only a remote call can meet.


class InvalidRequestError(BadInputError):
    """A request the service refused as outside its schema (422 ``validation``, 400 ``malformed_json``)."""

    http_status = 422


class ServiceError(FunnelError):
    """The service answered an error with no more specific class (500 ``internal``, an unknown path)."""

    http_status = 502


class ServiceUnreachableError(FunnelError):
    """No service answers at the URL: connection refused, unknown host, connection lost."""

    http_status = 503


class ServiceTimeoutError(FunnelError):
    """The service did not answer within the client's timeout (or the request body reached it late)."""

    http_status = 504


class MissingExtraError(FunnelError, ImportError):
    """An optional integration imported without the extra that installs its framework."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed: pip install 'funnel-retriever[{extra}]'")
        self.name = package


def error_class(type_: str) -> type[FunnelError] | None:
    """The domain error class whose :func:`error_type` code is ``type_`` (the service's JSON ``type``)."""
    found: list[type[FunnelError]] = [FunnelError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return next((cls for cls in found[1:] if _code(cls.__name__) == type_), None)


def _code(class_name: str) -> str:
    name = class_name.removesuffix("Error") or "funnel"
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
