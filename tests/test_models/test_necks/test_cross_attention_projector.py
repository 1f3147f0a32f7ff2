import pytest
import torch
import torch.nn.functional as F

from mmscalekd.models.necks import CrossAttentionProjector, conv3x3_as_matmul


def reference_forward(projector, student, queries=None):
    """Method section 1 written out with explicit softmax attention."""
    s = F.relu(projector.student_norm(projector.student_conv(student)))
    s = (s + projector.pos_embed).flatten(2).transpose(1, 2)
    if queries is None:
        queries = projector.query_embed.weight[None].repeat(
            student.shape[0], 1, 1)
    q = F.relu(projector.query_proj(queries))
    q, k, v = projector.q(q), projector.k(s), projector.v(s)
    h, d = projector.num_heads, projector.head_dim
    outs = []
    for head in range(h):
        part = slice(head * d, (head + 1) * d)
        logits = q[..., part] @ k[..., part].transpose(1, 2)
        attention = torch.softmax(logits * d**-0.5 * 5.0, dim=-1)
        outs.append(attention @ v[..., part])
    y = projector.norm(projector.out_proj(torch.cat(outs, dim=-1)))
    hidden = F.relu(projector.mlp[0](y))
    return y + projector.mlp[2](hidden)


@pytest.mark.parametrize(
    'student_shape,query_size,teacher_channels,num_heads',
    [
        ((32, 14, 14), (7, 7), 48, 4),  # 14x14 student onto 7x7 queries
        ((16, 7, 7), (7, 7), 24, 3),  # same grid, different width
        ((64, 4, 6), (2, 3), 32, 8),  # non-square
        ((8, 7, 7), (14, 14), 16, 2),  # student coarser than teacher
    ])
def test_shapes(student_shape, query_size, teacher_channels, num_heads):
    channels, height, width = student_shape
    projector = CrossAttentionProjector(
        student_channels=channels,
        teacher_channels=teacher_channels,
        student_size=(height, width),
        query_size=query_size,
        num_heads=num_heads)
    out = projector(torch.randn(2, channels, height, width))
    assert out.shape == (2, query_size[0] * query_size[1], teacher_channels)


@pytest.mark.parametrize('conv_impl', ['native', 'gemm'])
@pytest.mark.parametrize('self_query', [True, False])
def test_matches_written_out_equations(self_query, conv_impl):
    torch.manual_seed(0)
    projector = CrossAttentionProjector(
        student_channels=12,
        teacher_channels=16,
        student_size=(5, 3),
        query_size=(3, 3),
        num_heads=4,
        self_query=self_query,
        conv_impl=conv_impl).eval()
    student = torch.randn(3, 12, 5, 3)
    queries = None if self_query else torch.randn(3, 9, 16)
    torch.testing.assert_close(
        projector(student, queries),
        reference_forward(projector, student, queries),
        rtol=1e-5,
        atol=1e-5)


def test_softmax_scale_changes_attention():
    torch.manual_seed(0)
    kwargs = dict(
        student_channels=8,
        teacher_channels=8,
        student_size=4,
        query_size=2,
        num_heads=2)
    sharp = CrossAttentionProjector(**kwargs, softmax_scale=5.0).eval()
    flat = CrossAttentionProjector(**kwargs, softmax_scale=1.0).eval()
    flat.load_state_dict(sharp.state_dict())
    x = torch.randn(2, 8, 4, 4)
    assert not torch.allclose(sharp(x), flat(x))


def test_learned_queries_are_shared_over_the_batch():
    torch.manual_seed(0)
    projector = CrossAttentionProjector(8, 16, 5, 3, num_heads=2).eval()
    x = torch.randn(4, 8, 5, 5)
    batched = projector(x)
    for i in range(4):
        torch.testing.assert_close(batched[i:i + 1], projector(x[i:i + 1]))
    assert projector.query_embed.weight.shape == (9, 16)
    assert projector.pos_embed.shape == (1, 8, 5, 5)


def test_given_queries_are_used():
    torch.manual_seed(0)
    projector = CrossAttentionProjector(
        8, 16, 4, 2, num_heads=2, self_query=False).eval()
    x = torch.randn(2, 8, 4, 4)
    assert not torch.allclose(
        projector(x, torch.randn(2, 4, 16)), projector(x,
                                                       torch.randn(2, 4, 16)))
    assert not hasattr(projector, 'query_embed')


def test_gradients_reach_student_and_queries():
    projector = CrossAttentionProjector(8, 16, 4, 2, 2, self_query=False)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    q = torch.randn(2, 4, 16, requires_grad=True)
    projector(x, q).sum().backward()
    assert x.grad.abs().sum() > 0 and q.grad.abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match='num_heads=5'):
        CrossAttentionProjector(8, 16, 4, 2, num_heads=5)
    projector = CrossAttentionProjector(8, 16, 4, 2, num_heads=2)
    with pytest.raises(ValueError, match='built for student features'):
        projector(torch.randn(1, 8, 5, 5))
    with pytest.raises(ValueError, match='do not pass queries'):
        projector(torch.randn(1, 8, 4, 4), torch.randn(1, 4, 16))
    external = CrossAttentionProjector(8, 16, 4, 2, 2, self_query=False)
    with pytest.raises(ValueError, match='pass queries'):
        external(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r'\(N, 4, 16\)'):
        external(torch.randn(1, 8, 4, 4), torch.randn(1, 9, 16))


@pytest.mark.parametrize('self_query', [True, False])
def test_attention_weights_are_what_forward_applies(self_query):
    torch.manual_seed(0)
    projector = CrossAttentionProjector(
        student_channels=12,
        teacher_channels=16,
        student_size=(4, 6),
        query_size=(3, 2),
        num_heads=4,
        self_query=self_query).eval()
    student = torch.randn(3, 12, 4, 6)
    queries = None if self_query else torch.randn(3, 6, 16)
    weights = projector.attention_weights(student, queries)
    assert weights.shape == (3, 4, 3 * 2, 4 * 6)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 6))

    # weights @ V, heads concatenated, then out_proj, norm and MLP.
    s = F.relu(projector.student_norm(projector.student_conv(student)))
    s = (s + projector.pos_embed).flatten(2).transpose(1, 2)
    v = projector.v(s).view(3, 24, 4, 4).transpose(1, 2)  # (N, h, Ls, d)
    o = (weights @ v).transpose(1, 2).reshape(3, 6, 16)
    y = projector.norm(projector.out_proj(o))
    torch.testing.assert_close(
        y + projector.mlp(y), projector(student, queries), rtol=1e-5,
        atol=1e-5)


@pytest.mark.parametrize('shape', [(3, 5, 7, 7), (2, 4, 3, 5), (1, 6, 1, 1)])
@pytest.mark.parametrize('channels_last', [False, True])
def test_conv3x3_as_matmul_equals_conv2d(shape, channels_last):
    """Output and both gradients, in fp64 (rounding far below the check)."""
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, shape[1], 3, 3, dtype=torch.float64)
    results = []
    for conv in (lambda a, w: F.conv2d(a, w, padding=1), conv3x3_as_matmul):
        a = x.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        out = conv(a, w)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64)
         .view_as(out)).sum().backward()
        results.append((out, a.grad, w.grad))
    assert results[1][0].shape == (shape[0], 8, *shape[2:])
    for native, gemm in zip(*results):
        torch.testing.assert_close(gemm, native, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('channels,size,expected', [
    (1024, (7, 7), True),  # ResNet-50 stage 4 width class, 7x7: GEMM
    (2048, (8, 8), True),
    (2048, (14, 14), False),  # larger maps: the native kernel is faster
    (512, (7, 7), False),  # few channels: the native kernel is faster
])
def test_auto_conv_impl_choice(channels, size, expected):
    projector = CrossAttentionProjector(channels, 16, size, (1, 1), 2)
    assert projector.student_conv.use_gemm(torch.empty(1, channels, *size)) is expected
    assert not projector.student_conv.use_gemm(
        torch.empty(1, channels, *size, device='meta'))  # not CPU
    native = CrossAttentionProjector(channels, 16, size, (1, 1), 2,
                                     conv_impl='native')
    assert not native.student_conv.use_gemm(torch.empty(1, channels, *size))


def test_unknown_conv_impl():
    with pytest.raises(ValueError, match="conv_impl='cudnn'"):
        CrossAttentionProjector(8, 16, 4, 2, 2, conv_impl='cudnn')


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(num_heads='2'), TypeError, r"num_heads='2'`"),
    (dict(num_heads=2.0), TypeError, r'num_heads=2\.0`'),
    (dict(num_heads=True), TypeError, r'num_heads=True`'),
    (dict(softmax_scale='5.0'), TypeError, r"softmax_scale='5\.0'`"),
    (dict(softmax_scale=True), TypeError, r'softmax_scale=True`'),
    (dict(mlp_ratio=4.0), TypeError, r'mlp_ratio=4\.0`'),
    (dict(mlp_ratio=0), ValueError, r'mlp_ratio=0`'),
    (dict(self_query='False'), TypeError, r"self_query='False'`"),
    (dict(conv_impl=None), ValueError, r'conv_impl=None`'),
])
def test_config_values_of_the_wrong_type_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        CrossAttentionProjector(8, 16, 4, 2, **dict(dict(num_heads=2),
                                                    **kwargs))
