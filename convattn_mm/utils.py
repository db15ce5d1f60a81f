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


def check_positive_int(value, name):
    """Return ``value`` if it is an int >= 1 (not a bool), else raise
    ``TypeError`` / ``ValueError: {name}={value!r} must be a positive int``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'{name}={value!r} must be a positive int, got '
                        f'{type(value).__name__}')
    if value < 1:
        raise ValueError(f'{name}={value!r} must be a positive int')
    return value


def resolve_head_dims(embed_dims, num_heads, head_dims=None):
    """Per-head dims of a multi-head layer: ``head_dims`` if given, else
    ``embed_dims // num_heads``, which must then divide exactly. All three
    must be positive ints.

    Raises:
        TypeError / ValueError naming the argument and its value.
    """
    check_positive_int(embed_dims, 'embed_dims')
    check_positive_int(num_heads, 'num_heads')
    if head_dims is None:
        if embed_dims % num_heads:
            raise ValueError(
                f'embed_dims={embed_dims} is not divisible by '
                f'num_heads={num_heads}; choose num_heads among its divisors '
                f'{[d for d in range(1, embed_dims + 1) if embed_dims % d == 0]}'
                f' (RelPosAttention also takes head_dims explicitly)')
        return embed_dims // num_heads
    return check_positive_int(head_dims, 'head_dims')
