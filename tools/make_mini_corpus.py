"""Build the synthetic espeak-ng mini corpus (LibriSpeech layout) and print a summary.

Usage:
    python tools/make_mini_corpus.py OUT_DIR [--size tiny|default] [--seed N] [--workers N]
        [--text-corpus FILE --text-sentences N]

A finished corpus is not rebuilt; an interrupted one resumes.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spectron_kit.data import minicorpus  # noqa: E402


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be an integer >= 1")
    return value


def main(argv=None):
    """Parse arguments, build the corpus, print the table.

    Arguments:
        argv: command-line arguments (``sys.argv[1:]`` when None).
    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="output folder")
    parser.add_argument("--size", choices=sorted(minicorpus.SIZES), default="default",
                        help="tiny: 40 utterances (tests); default: 2640 utterances")
    parser.add_argument("--seed", type=int, default=1234, help="corpus seed (default 1234)")
    parser.add_argument("--workers", type=_positive, default=min(2, os.cpu_count() or 1),
                        help="processes (default: min(2, CPU count))")
    parser.add_argument("--text-corpus", type=Path, default=None,
                        help="also write a text-only LM corpus to this file")
    parser.add_argument("--text-sentences", type=_positive, default=50000,
                        help="sentences in the text corpus (default 50000)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console()
    started = time.perf_counter()
    try:
        root = minicorpus.ensure_mini_corpus(args.out_dir, size=args.size, seed=args.seed,
                                             workers=args.workers)
        if args.text_corpus is not None:
            minicorpus.ensure_text_corpus(args.text_corpus, args.text_sentences, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    table = Table(title=f"mini corpus {root} (size={args.size}, seed={args.seed})")
    for name, justify in (("split", "left"), ("speakers", "right"), ("utterances", "right"),
                          ("hours", "right")):
        table.add_column(name, justify=justify)
    rows = minicorpus.corpus_summary(root)
    for row in rows:
        table.add_row(row["split"], str(row["speakers"]), str(row["utterances"]), f"{row['hours']:.2f}")
    table.add_row("total", str(len(minicorpus.SPEAKERS)), str(sum(r["utterances"] for r in rows)),
                  f"{sum(r['hours'] for r in rows):.2f}", style="bold")
    console.print(table)
    if args.text_corpus is not None:
        console.print(f"text corpus: {args.text_corpus} ({args.text_sentences} sentences)")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
