"""The one error type for bad user input anywhere in the stack.

It lives in the lowest layer (`jaxrl.envs`) so that every layer above can raise it; the CLI turns it into a
one-line message and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InvalidChoiceError(ValueError):
    """A user-supplied name or value that is not one of the valid choices."""


def invalid_choice(kind: str, value: object, choices: Iterable[str], *, limit: int = 8) -> InvalidChoiceError:
    """Build an error naming the bad value and the closest valid choices (or all, when few)."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(value), choices, n=limit, cutoff=0.5)
    if close:
        hint = "closest: " + ", ".join(close)
    elif len(choices) <= limit:
        hint = "choices: " + ", ".join(choices)
    else:
        hint = f"choices include: {', '.join(choices[:limit])}, ... ({len(choices)} in all)"
    return InvalidChoiceError(f"unknown {kind} {value!r}; {hint}")
