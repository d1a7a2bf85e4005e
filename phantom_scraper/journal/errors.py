"""What the journal raises (its own module, so the backends import it downward)::

    JournalError
    ├── JournalClosedError        used after close()
    ├── JournalUnavailableError   the database failed: nothing was recorded, so nothing may be executed
    │   └── JournalGoneError      the journal file was deleted or replaced under the running process
    ├── UnknownRecordError        (also LookupError) no such signal / intent
    ├── InvalidTransitionError    (also ValueError) a programming error
    └── DuplicateIntentError      (also ValueError) the clOrdId is already journalled
"""
from __future__ import annotations


class JournalError(Exception):
    """Base class for everything the journal raises."""


class JournalClosedError(JournalError):
    """The journal was used after :meth:`Journal.close`."""


class JournalUnavailableError(JournalError):
    """SQLite failed; nothing was recorded, so the caller must not execute anything."""


class JournalGoneError(JournalUnavailableError):
    """The SQLite file this process opened is no longer the one at its path (deleted, or replaced
    by another file): writing on would record into a ghost, so nothing is recorded any more."""


class UnknownRecordError(JournalError, LookupError):
    """No signal / intent with that id."""


class InvalidTransitionError(JournalError, ValueError):
    """An intent state change the state machine does not allow (a programming error)."""


class DuplicateIntentError(JournalError, ValueError):
    """An intent with that ``clOrdId`` is already journalled."""
