"""Plain JSON values from the package's records: the one converter of bundle configs, evaluation
reports and run records."""
import dataclasses
import math
from pathlib import Path


def to_jsonable(value, where=None, nonfinite_to_none=False):
    """``value`` as plain JSON values, recursively: dataclasses and dicts become dicts (string keys),
    tuples lists, paths strings, numpy and torch scalars numbers.

    Arguments:
        value: what to convert.
        where: for records that must load back exactly (bundle configs): a value of any other type
            is a ``TypeError`` naming ``where``. Without it, such a value is written as its ``str()``
            (records for people: reports, settings).
        nonfinite_to_none: write NaN and infinities as ``None`` (strict JSON).

    Example:
        >>> to_jsonable({"a": (1, Path("x")), 2: float("nan")}, nonfinite_to_none=True)
        {'a': [1, 'x'], '2': None}
    """
    def convert(item):
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return convert(dataclasses.asdict(item))
        if isinstance(item, float):
            return None if nonfinite_to_none and not math.isfinite(item) else item
        if isinstance(item, (str, int, bool)) or item is None:
            return item
        if isinstance(item, Path):
            return str(item)
        if isinstance(item, dict):
            return {str(k): convert(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(v) for v in item]
        if hasattr(item, "item") and not isinstance(item, bytes):  # numpy / torch scalars
            try:
                return convert(item.item())
            except (TypeError, ValueError):
                pass
        if where is not None:
            raise TypeError(f"{where} has a value of type {type(item).__name__} that cannot be written to a "
                            "bundle config; build it from plain values (numbers, strings, lists, dicts)")
        return str(item)
    return convert(value)
