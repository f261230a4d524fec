"""The exception types that mean "bad input from the user" — the CLI prints them as one line, not a traceback."""

from __future__ import annotations

import importlib.util

from edgebridge.preprocess import SignalError
from edgebridge.spec import SpecError


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [SpecError, SignalError, FileNotFoundError, FileExistsError, KeyError,
                                         IndexError, ValueError, ImportError]
    if importlib.util.find_spec("torch") is not None:  # checkpoint errors exist only where torch is installed
        from edgebridge.backbones.weights import CheckpointError

        errors.append(CheckpointError)
    return tuple(errors)


USER_ERRORS = _user_errors()


def is_user_error(exc: BaseException) -> bool:
    """Bad input or a designed refusal (int8 gate, tampered bundle, lost source …): print it as one line.

    Every exception class edgebridge defines carries a message written for the user; so do the built-in kinds above.
    """
    return isinstance(exc, USER_ERRORS) or type(exc).__module__.startswith("edgebridge.")
