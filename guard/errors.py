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
