# The quick start's student trained alone on the 150 labelled digits: the
# baseline every distilled student is compared with.
_base_ = ['./_base_/pool_recipe.py', './_base_/pool_models.py']
model = {{_base_.student_model}}
