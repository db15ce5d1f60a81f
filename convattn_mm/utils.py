"""Checks shared by the whole package (user errors name the argument, its
value and what is allowed)."""


def check_choice(value, choices, name, extra=()):
    """Return ``value`` if it is one of ``choices`` (or ``extra``), else raise
    ``ValueError: {name}={value!r} is not supported; choose one of [...]``
    listing ``sorted(choices)`` then ``extra``."""
    if value not in choices and value not in extra:
        raise ValueError(f'{name}={value!r} is not supported; choose one of '
                         f'{sorted(choices) + list(extra)}')
    return value
