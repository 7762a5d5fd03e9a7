"""Read the weights of a CTranslate2 model folder (``model.bin``) without CTranslate2 itself.

CTranslate2 stores a converted model as one binary file of named variables. This reader knows its
layout, binary version 6 (what CTranslate2 3.x and 4.x write); every integer is little-endian:

=========================  ===================================================================
``u32``                    binary version (6)
string                     the model spec's name (``WhisperSpec``, ``TransformerSpec``, ...)
``u32``                    the spec's revision
``u32``                    number of variables V, then V times:
  string                   the variable's name, scopes joined by ``/`` (``encoder/conv1/weight``)
  ``u8``                   rank R, then R times ``u32``: the dimensions (C order)
  ``u8``                   element type: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
  ``u32``                  byte count, then the raw bytes
``u32``                    number of aliases A, then A pairs of strings: alias, the variable it names
=========================  ===================================================================

A string is a ``u16`` byte count that includes a closing NUL byte, then those bytes (UTF-8).

Quantised weights (``int8``/``int16``) come with a ``<name>_scale`` variable: one float32 per output row
(or a single one), and the real value is ``stored / scale``. :func:`read_ctranslate2` returns float32
tensors with the scales applied and the ``*_scale`` variables gone; scalars stay as they are stored
(``encoder/num_heads`` is an int16 scalar).

Example:
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "model.bin")
    >>> write_ctranslate2(path, "DemoSpec", 1, {"layer/weight": np.eye(2, dtype=np.float16)})
    >>> model = read_ctranslate2(path)
    >>> model.spec, model.revision, model.variables["layer/weight"].tolist()
    ('DemoSpec', 1, [[1.0, 0.0], [0.0, 1.0]])
"""
import dataclasses
import struct
from pathlib import Path

import numpy as np
import torch

SUPPORTED_VERSION = 6
#: element type ids of the format, in order
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32, "float16": np.float16,
          "bfloat16": np.uint16}  # bfloat16: the raw 16 bits, widened below


@dataclasses.dataclass
class CTranslate2Model:
    """What ``model.bin`` holds: the spec's name and revision, the variables (float32 tensors once
    dequantised; scalars as stored) and the aliases (alias -> variable name)."""

    spec: str
    revision: int
    variables: dict
    aliases: dict
    stored_dtypes: dict  # variable name -> element type as stored ("float16", "int8", ...)


class _Cursor:
    """Reads the file's fields one after another, with the offset in every error."""

    def __init__(self, data, path):
        self.data, self.offset, self.path = data, 0, path

    def take(self, count):
        if self.offset + count > len(self.data):
            raise ValueError(f"{self.path} ends at byte {len(self.data)} inside a field that needs {count} bytes "
                             f"from byte {self.offset}: the file is cut; copy the model folder again")
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def integer(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self):
        raw = self.take(self.integer("H"))
        return raw.rstrip(b"\0").decode("utf-8")


def _widen_bfloat16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_ctranslate2(path, scopes=None):
    """Read a CTranslate2 ``model.bin`` (or the folder holding it).

    Arguments:
        path: the file, or a CTranslate2 model folder.
        scopes: keep only the variables whose names start with one of these (``("encoder/",)``);
            None keeps all.

    Returns:
        A :class:`CTranslate2Model`; quantised weights are returned as float32 with their scales applied.

    Raises:
        FileNotFoundError: no ``model.bin`` there.
        ValueError: another binary version, or a cut or damaged file (one line naming the file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"no CTranslate2 model at {path}; pass a folder holding model.bin "
                                "(e.g. one written by ct2-transformers-converter)")
    cursor = _Cursor(path.read_bytes(), path)
    version = cursor.integer("I")
    if version != SUPPORTED_VERSION:
        raise ValueError(f"{path} is CTranslate2 binary version {version}; this reader reads version "
                         f"{SUPPORTED_VERSION} (CTranslate2 3.x and 4.x): convert the model again with a "
                         "current ct2-transformers-converter")
    spec, revision = cursor.string(), cursor.integer("I")
    raw, stored = {}, {}
    for _ in range(cursor.integer("I")):
        name = cursor.string()
        shape = tuple(cursor.integer("I") for _ in range(cursor.integer("B")))
        type_id = cursor.integer("B")
        if type_id >= len(DTYPES):
            raise ValueError(f"{path}: variable {name!r} has element type {type_id}, not one of the format's "
                             f"{len(DTYPES)}; the file is damaged or from a newer CTranslate2")
        dtype = DTYPES[type_id]
        count = cursor.integer("I")
        data = cursor.take(count)
        if scopes is not None and not name.startswith(tuple(scopes)):
            continue
        values = np.frombuffer(data, dtype=_NUMPY[dtype])
        if values.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: variable {name!r} holds {values.size} values for shape {shape}; "
                             "the file is damaged")
        raw[name], stored[name] = values.reshape(shape), dtype
    aliases = {}
    for _ in range(cursor.integer("I")):
        alias = cursor.string()
        aliases[alias] = cursor.string()
    return CTranslate2Model(spec, revision, _dequantise(raw, stored), aliases, stored)


def _dequantise(raw, stored):
    """float32 tensors for every non-scalar variable, ``stored / scale`` where a ``<name>_scale`` exists."""
    out = {}
    for name, values in raw.items():
        if name.endswith("_scale") and name[:-len("_scale")] in raw:
            continue
        if values.ndim == 0:
            out[name] = values.item()
            continue
        dtype = stored[name]
        array = _widen_bfloat16(values) if dtype == "bfloat16" else values.astype(np.float32)
        scale = raw.get(name + "_scale")
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float32).reshape(-1)
            rows = scale.reshape((-1,) + (1,) * (array.ndim - 1)) if scale.size > 1 else scale.reshape(())
            array = array / rows
        out[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return out


def write_ctranslate2(path, spec, revision, variables, aliases=None):
    """Write variables in the layout :func:`read_ctranslate2` reads (for tests and small tools).

    Arguments:
        path: the ``model.bin`` to write.
        spec, revision: the spec's name and revision.
        variables: name -> numpy array (float32, int8, int16, int32 or float16) or numpy scalar.
        aliases: alias -> variable name.
    """
    def string(text):
        data = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(data)) + data

    parts = [struct.pack("<I", SUPPORTED_VERSION), string(spec), struct.pack("<I", revision),
             struct.pack("<I", len(variables))]
    for name, value in variables.items():
        value = np.asarray(value)
        dtype = value.dtype.name
        if dtype not in DTYPES or dtype == "bfloat16":
            raise ValueError(f"variable {name!r} is {dtype}; write float32, float16, int8, int16 or int32")
        parts += [string(name), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape),
                  struct.pack("<B", DTYPES.index(dtype)), struct.pack("<I", value.nbytes),
                  np.ascontiguousarray(value).tobytes()]
    aliases = aliases or {}
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [string(alias), string(target)]
    Path(path).write_bytes(b"".join(parts))
