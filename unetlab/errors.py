"""The error unetlab raises for a user's mistake.

A `UnetlabError` message names the file or option at fault and says how to fix it. The CLI prints it
without a traceback and exits with status 2; library users can catch it as a `ValueError`. `plural` spells the
counts in such messages.
"""


class UnetlabError(ValueError):
    """Bad input from the user: a missing file, an invalid option, an unusable image or checkpoint."""


class UnknownNameError(UnetlabError, KeyError):
    """A name (model, loss, scheduler, ...) that is not registered; the message lists the valid ones."""

    # KeyError quotes its message; this one is a sentence, so print it as one.
    __str__ = Exception.__str__


class StopRequested(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM) during a long computation, which ends early: not an error."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """ "1 pair", "2 pairs": a count with its noun in the right number (`nouns` for irregular plurals)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
