"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) before it runs.

One workaround, nothing else: on CPython 3.11.7 (the CI machine's Python),
`ast.parse` raises `SystemError: AST constructor recursion depth mismatch`
when called deep in the stack (a CPython bug in the AST validator's
recursion counter). hypothesis calls it only to write a *description* of a
filter lambda, for a strategy's repr, and schemathesis's coverage phase
does that for every query parameter. The description is cosmetic, so when
that bug strikes it falls back to the function's name; generation and
checks are unchanged.
"""

import hypothesis.internal.reflection as reflection
import hypothesis.strategies._internal.lazy as lazy

_describe = reflection.get_pretty_function_description


def _describe_safely(fn):
    try:
        return _describe(fn)
    except SystemError:
        return getattr(fn, "__name__", "<function>")


reflection.get_pretty_function_description = _describe_safely
lazy.get_pretty_function_description = _describe_safely
