"""The one table formatter of the analysis tools and the quick start."""
import re
from typing import List, Sequence

__all__ = ['format_table']

# A cell that reads as a number: 12, -0.5, +1.80, [0.90, 2.70], 0.1-0.3,
# 2 vs 3, 2048@7x7. Placeholders for a missing value align with anything.
_NUMBER = re.compile(r'[\[(]?[+-]?\.?\d')
_PLACEHOLDERS = ('', '-', 'n/a')
_STYLES = ('text', 'markdown')


def _right_aligned(column: Sequence[str]) -> bool:
    values = [cell for cell in column if cell not in _PLACEHOLDERS]
    return bool(values) and all(_NUMBER.match(cell) for cell in values)


def format_table(header: Sequence[str],
                 rows: Sequence[Sequence],
                 style: str = 'text') -> str:
    """Rows under a header; columns of numbers right-aligned.

    Args:
        header (Sequence[str]): one name per column.
        rows (Sequence[Sequence]): the cells, any type (``str`` of each is
            shown); every row as long as ``header``.
        style (str): ``'text'``: columns padded to their widest cell and a
            dashed rule under the header, for a terminal; ``'markdown'``: a
            pipe table whose rule marks the numeric columns ``---:``.

    Returns:
        str: the table, lines joined by ``'\\n'``, no trailing newline.
    """
    if style not in _STYLES:
        raise ValueError(f'style={style!r}: use one of {_STYLES}.')
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    for i, row in enumerate(cells[1:]):
        if len(row) != len(header):
            raise ValueError(f'Row {i} has {len(row)} cells for '
                             f'{len(header)} columns {list(header)}.')
    columns = list(zip(*cells)) or [()] * len(header)
    right = [_right_aligned(column[1:]) for column in columns]
    if style == 'markdown':
        lines: List[str] = ['| ' + ' | '.join(row) + ' |' for row in cells]
        lines.insert(1, '|' + '|'.join('---:' if r else '---'
                                       for r in right) + '|')
        return '\n'.join(lines)
    widths = [max(len(cell) for cell in column) for column in columns]
    lines = [
        '  '.join(
            cell.rjust(width) if r else cell.ljust(width)
            for cell, width, r in zip(row, widths, right)).rstrip()
        for row in cells
    ]
    lines.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(lines)
