"""Transcripts and word alignments: reading them and the one rule for the words of a prompt.

Used by the recipes' data preparation (``recipes/LibriLight/librilight_prepare.py``),
the mini corpus and the plugins' tools. Every transcript goes through
:func:`spectron_kit.text.normalize_text`, the same normaliser the scores use.
"""
import csv
import json
import logging
from pathlib import Path

from spectron_kit.text import normalize_text

logger = logging.getLogger(__name__)


def read_trans_file(path) -> dict:
    """One LibriSpeech ``*.trans.txt`` file as ``{utt_id: text}`` in file order (text as written).

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "1-2.trans.txt")
        >>> _ = open(f, "w").write("1-2-0000 HELLO THERE\n1-2-0001 BYE\n")
        >>> read_trans_file(f)
        {'1-2-0000': 'HELLO THERE', '1-2-0001': 'BYE'}
    """
    table = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            uid, _, text = line.partition(" ")
            table[uid] = text
    return table


def read_transcripts(source):
    """Read transcripts keyed by utterance id.

    Arguments:
        source: one of: a folder (every ``*.trans.txt`` and ``transcripts.txt`` under
        it, lines ``<id> <text>``); a ``.csv`` file with ``id`` and ``text``
        columns (a manifest works); any other file with lines ``<id>\\t<text>``
        (pseudo-labels from ``tools/pseudo_label.py``) or ``<id> <text>``. A
        first line whose id is ``id`` is taken as a header.

    Returns:
        ``{utterance_id: normalised text}``.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"transcripts {str(source)!r} do not exist; pass a TSV/CSV file "
                                "of id<TAB>text lines or a folder of *.trans.txt files")
    texts, where = {}, {}
    duplicates = 0

    def add(key, text, place):
        nonlocal duplicates
        if key in texts:
            if texts[key] != text:  # two texts for one utterance: one of them would be silently wrong
                raise ValueError(f"transcripts: utterance id {key!r} has two different texts ({where[key]} and "
                                 f"{place}); keep one line per utterance")
            duplicates += 1
            return
        texts[key], where[key] = text, place

    if source.is_dir():
        files = sorted(set(source.rglob("*.trans.txt")) | set(source.rglob("transcripts.txt")))
        if not files:
            raise FileNotFoundError(f"no *.trans.txt or transcripts.txt files under {str(source)!r}")
        for path in files:
            for key, text, place in _read_id_text_lines(path, sep=None):
                add(key, text, place)
    elif source.suffix.lower() == ".csv":
        with open(source, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "id" not in reader.fieldnames or "text" not in reader.fieldnames:
                raise ValueError(f"transcripts CSV {str(source)!r} needs a header with 'id' and "
                                 f"'text' columns; found {reader.fieldnames}")
            for lineno, row in enumerate(reader, start=2):
                add(row["id"], normalize_text(row["text"] or ""), f"{source}:{lineno}")
    else:
        for key, text, place in _read_id_text_lines(source, sep="\t"):
            add(key, text, place)
    if duplicates:
        logger.warning("transcripts %s: %d ids appear more than once with the same text; each is used once",
                       source, duplicates)
    return texts


def _read_id_text_lines(path, sep):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            if sep is not None and sep in line:
                key, _, text = line.partition(sep)
            else:
                parts = line.strip().split(maxsplit=1)
                key, text = parts[0], parts[1] if len(parts) > 1 else ""
            key = key.strip()
            if lineno == 1 and key.lower() == "id":
                continue  # header
            yield key, normalize_text(text), f"{path}:{lineno}"


def read_word_alignments(paths):
    """Read ``*.words.json`` files: ``{utt_id: [[word, start_s, end_s], ...]}``.

    Arguments:
        paths: the JSON files.

    Returns:
        All files merged, ``{utt_id: list of [word, start, end]}``.
    """
    merged = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"word alignments {str(path)!r} are not valid JSON ({err}); "
                             "fix or delete the file") from None
        if not isinstance(data, dict):
            raise ValueError(f"word alignments {str(path)!r} must map utterance ids to "
                             "[[word, start_s, end_s], ...]")
        merged.update(data)
    return merged


def prompt_words(alignment, prompt_seconds):
    """The words that end within the prompt, as text: the one prompt-word rule.

    A word belongs to the prompt when it *ends* within it (a word cut by the
    prompt's end belongs to the continuation, whose audio holds its end). Both
    corpora use this rule: LibriSpeech/Libri-Light through their alignments,
    the mini corpus through the word timings it writes.

    Arguments:
        alignment: ``[[word, start_s, end_s], ...]`` of one utterance.
        prompt_seconds: prompt length.

    Returns:
        Normalised words whose end is ``<= prompt_seconds``, space separated.

    Example:
        >>> prompt_words([["HE", 0.1, 0.3], ["went", 0.4, 2.9], ["home", 2.95, 3.4]], 3.0)
        'he went'
    """
    words = []
    for item in alignment:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"alignment entry {item!r} is not [word, start_s, end_s]")
        word, _, end = item[0], float(item[1]), float(item[2])
        if end <= prompt_seconds + 1e-9:
            words.append(str(word))
    return normalize_text(" ".join(words))
