"""tools/analysis/conv_impl.py. Timings are checked for consistency, never
for speed."""
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT, load_tool


def test_conv_impl_tool_rows(capsys):
    """tools/analysis/conv_impl.py: one row per shape, 'auto' as the
    projector decides, the MAC count of forward + both gradients."""
    conv_impl = load_tool(
        osp.join(REPO_ROOT, 'tools', 'analysis', 'conv_impl.py'))
    rows = conv_impl.main(['8x3', '1024x2', '--rounds', '1',
                           '--batch-size', '2'])
    assert [(r['channels'], r['size'], r['auto_picks']) for r in rows] == [
        (8, 3, 'native'), (1024, 2, 'gemm')]
    assert rows[0]['macs'] == 3 * 2 * 3 * 3 * 8 * 8 * 9
    assert all(t > 0 for r in rows for t in r['median_s'].values())
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ['shape', 'native', 's', 'gemm', 's', 'native',
                                'GMAC/s', 'gemm', 'GMAC/s', 'auto', 'picks']
    cells = table[3].split()
    assert cells[0] == '1024@2x2' and cells[-1] == 'gemm'
    t = rows[1]['median_s']
    assert cells[1:5] == [f'{t["native"]:.4f}', f'{t["gemm"]:.4f}',
                          f'{rows[1]["macs"] / t["native"] / 1e9:.1f}',
                          f'{rows[1]["macs"] / t["gemm"] / 1e9:.1f}']
    with pytest.raises(SystemExit):
        conv_impl.main(['2048'])
    assert "Shape '2048' is not CHANNELSxSIZE" in capsys.readouterr().err
