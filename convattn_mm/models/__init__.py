"""Registered models: encodings, layers (and blocks), backbones (imported by
the registry's ``locations``)."""
from .encodings import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
