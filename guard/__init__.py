"""The guard engine: policies, the Guard protocol, and its backends."""

from guard.errors import GuardConfigError, GuardEngineError, GuardFailure, PolicyError
from guard.policies import Action, Direction, FailureMode, Policy, PolicySet
from guard.verdict import CheckRequest, Guard, PolicyResult, Span, Turn, Verdict

__all__ = [
    "Action", "CheckRequest", "Direction", "FailureMode", "Guard", "GuardConfigError",
    "GuardEngineError", "GuardFailure", "Policy", "PolicyError", "PolicyResult", "PolicySet",
    "Span", "Turn", "Verdict",
]
