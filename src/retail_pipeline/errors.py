"""Errors a user can cause; the CLI prints them as one line, without a traceback.

Every message shown to a user goes through :func:`one_line`: outside text (a value from a file,
a server, a setting) never reaches the terminal raw and a secret it quotes never prints.
"""

import re


class PipelineError(Exception):
    """Base for problems the user can fix (bad input, locked warehouse, missing tool)."""


class InputError(PipelineError):
    """An input file or message source cannot be read as required."""


class WarehouseError(PipelineError):
    """The warehouse cannot be opened or written."""


_CONTROL = re.compile(
    # ANSI escape sequences (CSI, OSC, single-character escapes), then any other control or
    # invisible formatting character, including C1 controls and bidirectional overrides
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
_SECRETS = (
    # a URI's user:password@ (the password may itself hold '@', ':' or '%'): up to the last '@'
    # of the URI, masked whole
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)\S*@", re.IGNORECASE), r"\1***@"),
    # key=value forms: password=..., passwd, pwd, token, secret, api keys (quoted or bare)
    (
        re.compile(
            r"((?:password|passwd|pwd|passphrase|token|secret|api[_-]?key)\s*[=:]\s*)"
            r"('(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;,]+)",
            re.IGNORECASE,
        ),
        r"\1***",
    ),
    (re.compile(r"(\bBearer\s+)\S+", re.IGNORECASE), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with every secret it may quote masked: a URI's password (whatever characters it
    holds), ``password=``/``token=``-style values (bare or quoted) and bearer tokens."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences and control characters (which a
    value from outside may hold to rewrite the screen) become spaces or ``?``."""
    return _CONTROL.sub(lambda match: " " if match.group() in "\t\n\r" else "?", text)


def one_line(text: str, limit: int = 2000) -> str:
    """What a user sees of a message that may quote outside text: secrets masked, control
    characters neutralised, whitespace folded to one line, at most ``limit`` characters."""
    folded = " ".join(printable(redact(text)).split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
