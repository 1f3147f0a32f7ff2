# What every mmscalekd config adds to mmengine's stock Runner (inherit it as a
# `_base_`; a recipe that has its own `custom_hooks`, e.g. EMA, lists these
# after its own, since mmengine refuses a key that two bases both set):
# - WorkDirHook: one training run per work dir (`work_dir_lock` below),
#   auto-resume from the newest complete checkpoint, atomic saves;
# - CheckpointCheckHook: loaded checkpoints must hold exactly the model's
#   finite weights, and a resumed state must be one the schedule can reach;
#   a changed schedule is rebuilt on resume;
# - FiniteCheckHook: a non-finite loss, gradient, update or checkpoint stops
#   the run before it reaches the weights or the disk;
# - DataCheckHook: labels the head cannot predict, unreadable images and
#   non-finite predictions are named;
# - TeacherValHook: the first validation also reports the teacher's accuracy;
# - GlobalBatchHook: logs the global batch (processes x batch x accumulation),
#   the recipe's base batch and the learning rate in use;
# - StudentCheckpointHook: a distillation run writes the student alone beside
#   each checkpoint (`epoch_3_student.pth`, loadable with mmpretrain and the
#   work dir's `student_config.py`), removed with its checkpoint.
# Importing mmscalekd also registers a checkpoint reader that loads
# mmengine's own files with torch's weights_only=True.
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
custom_hooks = [
    dict(type='WorkDirHook'),
    dict(type='CheckpointCheckHook'),
    dict(type='FiniteCheckHook'),
    dict(type='DataCheckHook'),
    dict(type='TeacherValHook'),
    dict(type='GlobalBatchHook'),
    dict(type='StudentCheckpointHook'),
]
# `None` switches the lock off.
work_dir_lock = dict(stale_after=600, refresh_every=30)
