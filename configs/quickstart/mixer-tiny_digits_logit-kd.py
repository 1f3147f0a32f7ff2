# The digits pair's student with logit distillation only from its teacher
# (`model.teacher.checkpoint`: the teacher's trained weights). Same student
# and recipe as the baseline.
_base_ = ['./_base_/digits_recipe.py', './_base_/digits_models.py']
model = dict(
    type='ScaleKDDistiller',
    student={{_base_.student_model}},
    teacher=dict(config={{_base_.teacher_model}}, checkpoint=None),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=16)
