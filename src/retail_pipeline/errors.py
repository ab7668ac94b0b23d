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


class WarehouseOutOfMemory(WarehouseError):
    """A write needed more than the warehouse's memory limit; it was rolled back whole."""


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


_DSN_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "passphrase"})
_DSN_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)\s*", re.S)


def display_dsn(dsn: str) -> str:
    """A database DSN or URL as it may be shown: the user, host, port, database and options
    kept, every password dropped; both the URI form (``postgresql://u:pw@h:5432/db``) and
    libpq's ``key=value`` form (``host=h user=u password='p w'``). Text that is neither is
    masked with :func:`redact`."""
    import urllib.parse

    text = dsn.strip()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        try:
            parts = urllib.parse.urlsplit(text)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return redact(text)
        if ":" in host:
            host = f"[{host}]"
        user = f"{parts.username}@" if parts.username else ""
        query = "&".join(
            pair
            for pair in parts.query.split("&")
            if pair and pair.split("=", 1)[0].lower() not in _DSN_SECRET_KEYS
        )
        shown = f"{parts.scheme}://{user}{host}{port}{parts.path}"
        return redact(shown + (f"?{query}" if query else ""))
    pairs, position = [], 0
    while position < len(text):
        match = _DSN_PAIR.match(text, position)
        if match is None or match.end() == position:
            return redact(text) if "=" in text else "a DSN"
        key, value = match.groups()
        if key.lower() not in _DSN_SECRET_KEYS:
            pairs.append(f"{key}={value}")
        position = match.end()
    return redact(" ".join(pairs))
