"""Small shims over JAX API differences between the supported versions.

The package declares ``jax>=0.4.30``; these helpers give one spelling for
what changed since (checked against jax 0.4.30 and 0.10).
"""

from typing import Any

import jax


def typeof(x: Any) -> Any:
    """The abstract value (shape, dtype, weak type) of ``x``: ``jax.typeof``,
    or ``jax.core.get_aval`` on JAX that predates it."""
    fn = getattr(jax, "typeof", None)
    if fn is None:
        return jax.core.get_aval(x)  # pylint: disable=no-member
    return fn(x)


def key_impl_name(key: jax.Array) -> str:
    """The PRNG implementation name of a typed key array, e.g.
    ``"threefry2x32"``: what ``jax.random.wrap_key_data(..., impl=...)``
    accepts back. (``jax.random.key_impl`` returns that string on recent JAX,
    and an object whose ``str`` is a short tag, ``"fry"``, on jax 0.4.30.)"""
    spec = jax.random.key_impl(key)
    if isinstance(spec, str):
        return spec
    name = getattr(getattr(spec, "_impl", None), "name", None)
    return name if isinstance(name, str) else str(spec)
