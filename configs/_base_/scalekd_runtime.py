# Settings every mmscalekd config needs, on top of mmpretrain's runtime.
# `custom_imports` registers the package, so any of these configs also works
# when dropped into an existing mmpretrain setup (mmpretrain's tools/train.py).
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
# Loads mmengine's own checkpoints safely on torch >= 2.6 (see ScaleKDRunner).
runner_type = 'ScaleKDRunner'
