"""Errors raised by the guard engine.

    GuardEngineError
    ├── PolicyError        policies.yaml is unreadable or invalid (message names file:line: field)
    ├── GuardConfigError   a backend's options are wrong, or its model is missing
    └── GuardFailure       a check could not produce a verdict (timeout, unreadable reply, crash);
                           the pipeline applies each policy's failure mode, never "allowed" by default
"""


class GuardEngineError(Exception):
    pass


class PolicyError(GuardEngineError):
    pass


class GuardConfigError(GuardEngineError):
    pass


class GuardFailure(GuardEngineError):
    pass


def validate_options(model: type, data: object, what: str):
    """`model.model_validate(data)` (a pydantic model), its errors as one GuardConfigError
    naming `what` ("rsafe guard options: max_tokens: ..."): the one place options are checked."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise GuardConfigError(f"{what}: {problems}") from exc
