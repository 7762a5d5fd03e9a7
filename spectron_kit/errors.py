"""Error text helpers shared by every layer (imports nothing of the package)."""
import os

#: set to 1 to see the traceback behind a one-line error
TRACEBACK_ENV = "SPECTRON_KIT_TRACEBACK"


def traceback_wanted():
    """Whether the user asked for tracebacks instead of one-line errors (``SPECTRON_KIT_TRACEBACK=1``)."""
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def one_line(err):
    """The first line of an error's message (KeyError quotes stripped), for ``error: ...`` output.

    Example:
        >>> one_line(ValueError("bad value\\nmore detail")), one_line(KeyError("key")), one_line(OSError())
        ('bad value', 'key', 'OSError')
    """
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    text = str(text).strip()
    return text.splitlines()[0] if text else type(err).__name__
