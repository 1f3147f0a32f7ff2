"""Validation evaluates the teacher beside the student (first time), with
TeacherValHook."""
import pytest
import torch

from tests.conftest import build_runner, smoke_config


def teacher_accuracy(runner) -> float:
    """The teacher's top-1 on the validation set, computed directly."""
    distiller = runner.model
    correct = total = 0
    with torch.no_grad():
        for batch in runner.val_dataloader:
            data = distiller.data_preprocessor(batch, False)
            logits = distiller.teacher.network(data['inputs'], mode='tensor')
            labels = torch.cat([s.gt_label for s in data['data_samples']])
            correct += int((logits.argmax(1) == labels).sum())
            total += len(labels)
    return 100.0 * correct / total


@pytest.mark.parametrize('when,expected', [('first', [True, False]),
                                           ('always', [True, True]),
                                           ('never', [False, False])])
def test_teacher_metrics_join_the_validations_asked_for(tmp_path, when,
                                                        expected):
    runner = build_runner(smoke_config(
        tmp_path, max_epochs=2, validate=True, custom_hooks=[dict(
            type='TeacherValHook', evaluate_teacher=when)]))
    seen = []
    run = runner.val_loop.run
    runner.val_loop.run = lambda: seen.append(run()) or seen[-1]
    runner.train()
    assert [any(k.startswith('teacher/') for k in metrics)
            for metrics in seen] == expected
    if expected[0]:
        assert seen[0]['teacher/accuracy/top1'] == pytest.approx(
            teacher_accuracy(runner))
        # The student's metrics are still the loop's own.
        assert 'accuracy/top1' in seen[0]
