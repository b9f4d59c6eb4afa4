"""The answers of a keel server as typed values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Decision:
    """One decision: the variant chosen for a unit, with the probability it had."""

    decision_id: str
    deployment: str
    variant: str
    propensity: float
    policy_version: int
    revision: int
    control: bool
    #: The chosen model variant's answer (V2 response JSON), for deployments of models.
    prediction: Optional[Dict[str, Any]] = None
    #: The id the prediction was logged under (labels refer to it).
    prediction_id: Optional[str] = None
    #: Set when an output guard held the chosen answer back: ``{"from": ..., "violation": ...}``.
    fallback: Optional[Dict[str, Any]] = None
    #: The whole JSON answer.
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "Decision":
        return cls(
            decision_id=body["decision_id"],
            deployment=body["deployment"],
            variant=body["variant"],
            propensity=float(body["propensity"]),
            policy_version=int(body["policy_version"]),
            revision=int(body["revision"]),
            control=bool(body["control"]),
            prediction=body.get("prediction"),
            prediction_id=body.get("prediction_id"),
            fallback=body.get("fallback"),
            raw=body,
        )


@dataclass(frozen=True)
class FeedbackResult:
    """A reward recorded: ``counted`` is False when the same reward was already counted."""

    decision_id: str
    counted: bool


@dataclass(frozen=True)
class ItemError:
    """One item of a batch that the server refused; the other items are unaffected.

    ``index`` is the item's position in the batch sent, ``code`` the server's stable error code
    and ``message`` what was wrong.
    """

    index: int
    code: str
    message: str

    def __bool__(self) -> bool:
        # So `[r for r in results if r]` keeps the successes.
        return False
