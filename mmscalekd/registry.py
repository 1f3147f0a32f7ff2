"""Registries of mmscalekd.

Models, necks, losses and datasets go to mmpretrain's own registries so that
configs name them in the default ``mmpretrain`` scope. Teacher adapters are
not models (they hold no parameters) and have a registry of their own.
"""
from mmengine.registry import Registry

__all__ = ['TEACHER_ADAPTERS']

TEACHER_ADAPTERS = Registry(
    'teacher adapter', locations=['mmscalekd.models.teachers'])
