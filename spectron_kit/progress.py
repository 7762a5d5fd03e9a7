"""The toolkit's progress bars (rich): one look for every long loop."""
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def progress_bar(info=False, console=None, disable=False, transient=False):
    """A rich ``Progress``: description, bar, done/total, elapsed, remaining (and ``task.fields["info"]``).

    Arguments:
        info: add a column showing each task's ``info`` field (e.g. the current loss).
        console: the rich console to draw on (default: rich's).
        disable: draw nothing (e.g. in the non-main processes of a distributed run).
        transient: remove the bar when it finishes.

    Example:
        >>> with progress_bar(disable=True) as bar:
        ...     task = bar.add_task("work", total=2); bar.advance(task, 2)
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=console, disable=disable, transient=transient)


def track(iterable, description, total=None, enabled=True):
    """Iterate with a transient progress bar (no bar when ``enabled`` is False).

    Arguments:
        iterable: what to iterate over.
        description: label of the bar.
        total: number of items when ``len(iterable)`` does not work.
        enabled: False yields the items with no bar.

    Returns:
        iterator over the items of ``iterable``.
    """
    if not enabled:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    with progress_bar(transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
