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


def source_error(what, source, override, err):
    """A one-line ``FileNotFoundError`` for a model source (local folder or hub id) that does not load.

    Arguments:
        what: the component, e.g. "text LM".
        source: what was given.
        override: the recipe key that sets it, e.g. "--lm_source", or the whole fix as a sentence.
        err: the loader's error.

    Example:
        >>> str(source_error("text LM", "no/such-model", "--lm_source", OSError("404")))[:62]
        "text LM 'no/such-model' cannot be loaded: it is not a local fo"
    """
    if os.path.exists(str(source)):
        why = f"the folder does not hold a loadable model ({one_line(err)[:160]})"
    else:
        why = ("it is not a local folder, and not a hub id in the local cache or reachable on the hub "
               f"({one_line(err)[:120]})")
    fix = f"pass {override}=<a local folder or a cached hub id>" if override.startswith("--") else override
    return FileNotFoundError(f"{what} {str(source)!r} cannot be loaded: {why}; {fix}")
