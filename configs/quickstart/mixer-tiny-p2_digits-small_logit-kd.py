# The quick start's student with logit distillation only, from a teacher
# tools/quickstart.py pre-trained (it sets `model.teacher.checkpoint`). Same
# student, data and recipe as the baseline.
_base_ = ['./_base_/pool_recipe.py', './_base_/pool_models.py']
model = dict(
    type='ScaleKDDistiller',
    student={{_base_.student_model}},
    teacher=dict(config={{_base_.teacher_model}}, checkpoint=None),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=16)
