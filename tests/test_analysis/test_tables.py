"""The one table formatter of the tools and the quick start."""
import pytest

from mmscalekd.analysis import format_table


def test_text_table_pads_and_right_aligns_numbers():
    table = format_table(['method', 'file', 'accuracy', 'CI'],
                         [['base', 'work_dirs/a.pkl', 70.0, '[0.90, 2.70]'],
                          ['scalekd', 'b.pkl', '73.25', '-']])
    assert table.split('\n') == [
        'method   file             accuracy            CI',
        '-------  ---------------  --------  ------------',
        'base     work_dirs/a.pkl      70.0  [0.90, 2.70]',
        'scalekd  b.pkl               73.25             -',
    ]


def test_markdown_table_marks_numeric_columns():
    table = format_table(['part', 'GMAC/img', 'time s'],
                         [['teacher forward', '1.5', ''],
                          ['projector', '+2', '0.103-0.2']],
                         style='markdown')
    assert table.split('\n') == [
        '| part | GMAC/img | time s |',
        '|---|---:|---:|',
        '| teacher forward | 1.5 |  |',
        '| projector | +2 | 0.103-0.2 |',
    ]


def test_placeholders_alone_do_not_make_a_column_numeric():
    table = format_table(['a', 'b'], [['x', 'n/a'], ['yy', '-']])
    assert table.split('\n')[2:] == ['x   n/a', 'yy  -']


def test_header_only():
    assert format_table(['a', 'bb'], []) == 'a  bb\n-  --'


@pytest.mark.parametrize('rows, style, match', [
    ([['only one cell']], 'text', 'Row 0 has 1 cells for 2 columns'),
    ([['a', 'b']], 'html', "style='html'"),
])
def test_errors_name_the_problem(rows, style, match):
    with pytest.raises(ValueError, match=match):
        format_table(['x', 'y'], rows, style=style)
