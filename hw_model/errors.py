"""The error family and exit codes every mtsnn command shares (documented in docs/cli.md).

Every user-facing error is a subclass of ``MtsnnError`` (itself a ``ValueError``), raised with
a one-line message that names the file or option, the field, what was expected and what was
found. The command line turns it into that one line on stderr and its ``exit_code``:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     an integer divergence was found (validate: two paths disagree)
2     bad input or usage (a file, a field, an option or a combination)
3     a check the user asked for could not run (e.g. the network does not map
      onto the simulator's target)
130   interrupted (Ctrl-C)
====  ==========================================================================

Each package has its own error classes (``CoreFormatError``, ``TargetError``, ``ArchError``,
``CheckpointError``, ``ExportError`` ...); all derive from ``InputError`` or
``CheckUnavailable`` here, the lowest layer, so one ``except MtsnnError`` serves every command.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_DIVERGENCE",
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_UNAVAILABLE",
    "EXIT_INTERRUPTED",
    "EXIT_CODES",
    "MtsnnError",
    "InputError",
    "CheckUnavailable",
    "one_line",
]

EXIT_OK = 0
EXIT_DIVERGENCE = 1
EXIT_BAD_INPUT = 2
EXIT_CHECK_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_DIVERGENCE: "an integer divergence was found (two paths disagree)",
    EXIT_BAD_INPUT: "bad input or usage",
    EXIT_CHECK_UNAVAILABLE: "a requested check could not run",
    EXIT_INTERRUPTED: "interrupted",
}


class MtsnnError(ValueError):
    """Base of every mtsnn error meant for the user; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_BAD_INPUT


class InputError(MtsnnError):
    """Bad input: a file, field, option or combination that mtsnn cannot accept (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class CheckUnavailable(MtsnnError):
    """A check the user asked for cannot run on this input (exit 3), e.g. no mapping on a target."""

    exit_code = EXIT_CHECK_UNAVAILABLE


def one_line(text: object, limit: int = 400) -> str:
    """``text`` as one printable line: whitespace runs collapsed, control characters escaped,
    lone surrogates replaced, at most ``limit`` characters (safe to print on a terminal)."""
    flat = " ".join(str(text).split())
    safe = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
                   for ch in flat)
    safe = safe.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."
