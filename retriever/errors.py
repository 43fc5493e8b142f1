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


class InvalidDimsError(BadInputError):
    """A dim ladder that is not ascending or goes above the model's dim."""


class CorpusError(BadInputError):
    """A corpus that cannot be read: missing, unreadable, malformed, empty or not UTF-8."""


class ModelLoadError(FunnelError):
    """A model name or path that cannot be loaded offline."""


class ModelMismatchError(FunnelError):
    """A model (or ladder, or chunking) other than the one that built the collection."""

    http_status = 409


class CollectionNotFoundError(FunnelError):
    """No collection of that name in the data directory."""

    http_status = 404


class CollectionLockedError(FunnelError):
    """The embedded collection is open in another process (single-writer lock)."""

    http_status = 423


class StoreError(FunnelError):
    """The engine failed in a way that is not the caller's fault."""

    http_status = 500


class TuneError(BadInputError):
    """Training data, evaluation data, output or checkpoint that cannot be used for tuning."""


class OutOfMemoryError(FunnelError):
    """The device ran out of memory; the message says which option to lower."""

    http_status = 507
