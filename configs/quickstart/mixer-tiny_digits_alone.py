# The digits pair's student trained alone: the baseline.
_base_ = ['./_base_/digits_recipe.py', './_base_/digits_models.py']
model = {{_base_.student_model}}
