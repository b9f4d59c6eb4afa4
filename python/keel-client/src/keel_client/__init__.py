"""Python client of a keel server.

>>> from keel_client import Client
>>> keel = Client("http://127.0.0.1:8080", token="keel_...")
>>> keel.infer("bc-lr", {"input": x})["probabilities"]
>>> d = keel.decide("promo", unit_id="u1", context={"age": 31})
>>> keel.feedback("promo", d.decision_id, 1.0)
"""

from .client import SHA256_HEADER, Client
from .errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    KeelError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServerError,
)
from .types import Decision, FeedbackResult, ItemError

__all__ = [
    "SHA256_HEADER",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Decision",
    "FeedbackResult",
    "InvalidRequestError",
    "ItemError",
    "KeelError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ServerError",
]
__version__ = "0.1.0"
