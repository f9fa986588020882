"""``typed_endpoint``: a method of a router's class as a FastAPI endpoint.

Every router is built the same way: a small class holds what its routes share (the accessor,
the store, the runner) and has one method per endpoint; its ``build_..._router`` function
registers them. Some parameters take their type or default from the builder's arguments (the
row limit, the actor dependency of the app's default actor), which a method's signature cannot
know when the class is defined; the builder gives them here.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["typed_endpoint"]


def typed_endpoint(method: Callable[..., Any], **types: Any) -> Callable[..., Any]:
    """``method`` with the parameter types (or ``(type, default)`` pairs) in its signature.

    Args:
        method: the endpoint, usually a bound method; sync, async, or an async generator
            (a Server-Sent Events stream), and the endpoint FastAPI sees is the same kind.
        types: by parameter name, its annotation, or ``(annotation, default)`` to set its
            default too (such as ``fastapi.Depends(...)``); names ``method`` does not take
            are ignored.

    Returns:
        A function with ``method``'s name, docstring and (retyped) signature that calls it.
    """
    signature = inspect.signature(method, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        given = types.get(parameter.name)
        if isinstance(given, tuple):
            parameter = parameter.replace(annotation=given[0], default=given[1])
        elif given is not None:
            parameter = parameter.replace(annotation=given)
        parameters.append(parameter)

    def call(**values: Any) -> Any:
        return method(**values)

    async def call_async(**values: Any) -> Any:  # FastAPI awaits it in the event loop
        return await method(**values)

    async def call_stream(**values: Any) -> AsyncIterator[Any]:  # FastAPI streams what it yields
        async for item in method(**values):
            yield item

    endpoint: Callable[..., Any] = call
    if inspect.isasyncgenfunction(method):
        endpoint = call_stream
    elif inspect.iscoroutinefunction(method):
        endpoint = call_async
    endpoint.__name__ = method.__name__
    endpoint.__doc__ = method.__doc__
    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return endpoint
