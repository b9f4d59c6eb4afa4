"""The client: one HTTP session (one kept-alive connection) to one keel server."""

from __future__ import annotations

import hashlib
import os
from typing import (
    IO,
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote

import numpy as np
import requests

from .errors import KeelError, error_for
from .types import Decision, FeedbackResult, ItemError

#: The header a push sends the file's SHA-256 in.
SHA256_HEADER = "x-keel-sha256"

#: numpy dtype -> Open Inference Protocol datatype.
_DATATYPES: Dict[str, str] = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
#: Open Inference Protocol datatype -> numpy dtype (BYTES become object arrays of str).
_DTYPES: Dict[str, Any] = {v: np.dtype(k) for k, v in _DATATYPES.items()}

Inputs = Union[np.ndarray, Mapping[str, np.ndarray]]
DecideItem = Mapping[str, Any]
FeedbackItem = Union[Tuple[str, float], Mapping[str, Any]]


def _tensor(name: str, array: np.ndarray) -> Dict[str, Any]:
    """One V2 input tensor from a numpy array (strings and bytes are BYTES)."""
    array = np.asarray(array)
    if array.dtype.kind in ("U", "S", "O"):
        data: List[Any] = [
            v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1).tolist()
        ]
        datatype = "BYTES"
    else:
        datatype = _DATATYPES.get(array.dtype.name, "")
        if not datatype:
            raise TypeError(f"input {name!r}: numpy dtype {array.dtype} has no Open Inference Protocol datatype")
        data = array.reshape(-1).tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def _array(output: Mapping[str, Any]) -> np.ndarray:
    """A numpy array from one V2 output tensor."""
    shape = [int(d) for d in output.get("shape", [])]
    datatype = output.get("datatype", "")
    if datatype == "BYTES":
        return np.array(output.get("data", []), dtype=object).reshape(shape)
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        raise KeelError(0, "unknown_datatype", f"output {output.get('name')!r} has datatype {datatype!r}")
    return np.asarray(output.get("data", []), dtype=dtype).reshape(shape)


def _file_sha256(f: IO[bytes]) -> Tuple[str, int]:
    """The SHA-256 (hex) and size of the rest of `f`, read in 1 MiB blocks; rewinds it."""
    start = f.tell()
    digest = hashlib.sha256()
    size = 0
    while True:
        block = f.read(1 << 20)
        if not block:
            break
        digest.update(block)
        size += len(block)
    f.seek(start)
    return digest.hexdigest(), size


class Client:
    """A keel server at ``url`` (``http://127.0.0.1:8080``), called with the API token
    ``token`` (``keel access token create NAME --scope ...``; ``None`` for a server without
    authentication, e.g. on loopback).

    Every call goes over one :class:`requests.Session`, so consecutive calls reuse one
    kept-alive connection. A refused call raises a :class:`~keel_client.KeelError` subclass
    carrying the server's status, code and message; in a batch call, a refused item is an
    :class:`~keel_client.ItemError` at its place in the result list and the others are
    unaffected.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Closes the connection."""
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        response = self.session.request(method, self.url + path, **kwargs)
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @staticmethod
    def _error(response: requests.Response) -> KeelError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            return error_for(response.status_code, str(body.get("code", "")), str(body["error"]), body)
        text = response.text.strip() or response.reason or ""
        return error_for(response.status_code, "http_error", text, body)

    @staticmethod
    def _seg(name: str) -> str:
        return quote(str(name), safe="@")

    # ---- inference ---------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: Optional[Union[int, str]] = None,
        outputs: Optional[Sequence[str]] = None,
    ) -> Dict[str, np.ndarray]:
        """Runs ``model`` (its served version, or ``version``) on ``inputs`` over the Open
        Inference Protocol (V2) REST binding.

        ``inputs`` is a mapping of input name to numpy array, or one array for a model with one
        input (it is sent under the name the model's metadata gives). Returns each output as a
        numpy array, by name (``outputs`` restricts which ones are computed).
        """
        if isinstance(inputs, np.ndarray):
            meta = self.model_metadata(model, version=version)
            names = [i["name"] for i in meta.get("inputs", [])]
            if len(names) != 1:
                raise ValueError(f"model {model!r} has inputs {names}: pass a mapping of name to array")
            inputs = {names[0]: inputs}
        body: Dict[str, Any] = {"inputs": [_tensor(n, a) for n, a in inputs.items()]}
        if outputs:
            body["outputs"] = [{"name": n} for n in outputs]
        path = f"/v2/models/{self._seg(model)}"
        if version is not None:
            path += f"/versions/{self._seg(str(version))}"
        answer = self._request("POST", path + "/infer", json=body)
        return {o["name"]: _array(o) for o in answer.get("outputs", [])}

    def model_metadata(self, model: str, *, version: Optional[Union[int, str]] = None) -> Dict[str, Any]:
        """The V2 metadata of a served model: its inputs and outputs with datatypes and shapes."""
        path = f"/v2/models/{self._seg(model)}"
        if version is not None:
            path += f"/versions/{self._seg(str(version))}"
        return self._request("GET", path)

    # ---- deployments -------------------------------------------------------------------------

    @staticmethod
    def _decide_body(
        unit_id: Optional[str],
        context: Optional[Mapping[str, Any]],
        eligible: Optional[Sequence[str]],
        inputs: Optional[Mapping[str, np.ndarray]],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {}
        if unit_id is not None:
            body["unit_id"] = unit_id
        if context is not None:
            body["context"] = dict(context)
        if eligible is not None:
            body["eligible"] = list(eligible)
        if inputs is not None:
            body["inputs"] = [_tensor(n, a) for n, a in inputs.items()]
        return body

    def decide(
        self,
        deployment: str,
        unit_id: Optional[str] = None,
        context: Optional[Mapping[str, Any]] = None,
        *,
        eligible: Optional[Sequence[str]] = None,
        inputs: Optional[Mapping[str, np.ndarray]] = None,
    ) -> Decision:
        """Decides for one unit: the variant, its propensity, and for model variants the model's
        prediction on ``inputs``. The decision is logged durably before it is returned."""
        body = self._decide_body(unit_id, context, eligible, inputs)
        return Decision.from_json(self._request("POST", f"/v1/deployments/{self._seg(deployment)}/decide", json=body))

    def decide_batch(self, deployment: str, items: Iterable[DecideItem]) -> List[Union[Decision, ItemError]]:
        """Decides for many units in one call. Each item is a mapping with the keys of
        :meth:`decide` (``unit_id``, ``context``, ``eligible``, ``inputs`` as numpy arrays).
        Returns one result per item, in order: a :class:`Decision`, or an :class:`ItemError` for an
        item the server refused (the others are decided). At most 10,000 items per call."""
        bodies = [
            self._decide_body(r.get("unit_id"), r.get("context"), r.get("eligible"), r.get("inputs"))
            for r in items
        ]
        answer = self._request(
            "POST", f"/v1/deployments/{self._seg(deployment)}/decide:batch", json={"requests": bodies}
        )
        return [
            Decision.from_json(r["decision"]) if "decision" in r else ItemError(r["index"], r["code"], r["error"])
            for r in answer["results"]
        ]

    def feedback(
        self,
        deployment: str,
        decision_id: str,
        reward: Optional[float] = None,
        *,
        metrics: Optional[Mapping[str, float]] = None,
    ) -> FeedbackResult:
        """Records the reward of a decision (the decision metric) and/or values of the
        deployment's other declared metrics (``metrics={"revenue": 23.5}``), which may arrive
        at different times; at least one of them. Idempotent: the same values again are not
        counted (``counted`` is false); a different one is refused as a conflict."""
        if reward is None and not metrics:
            raise ValueError("feedback needs a reward, metrics, or both")
        body: Dict[str, Any] = {"decision_id": decision_id}
        if reward is not None:
            body["reward"] = reward
        if metrics:
            body["metrics"] = dict(metrics)
        answer = self._request("POST", f"/v1/deployments/{self._seg(deployment)}/feedback", json=body)
        return FeedbackResult(answer["decision_id"], bool(answer["counted"]))

    def feedback_batch(self, deployment: str, events: Iterable[FeedbackItem]) -> List[Union[FeedbackResult, ItemError]]:
        """Records many rewards in one call: ``(decision_id, reward)`` pairs or mappings with
        those keys (a mapping may carry ``metrics`` beside or instead of ``reward``, as
        :meth:`feedback` does). One result per event, in order: a :class:`FeedbackResult`, or an
        :class:`ItemError` for an event the server refused (unknown decision, reward out of
        range...); the others are recorded."""
        bodies = [
            {"decision_id": e[0], "reward": e[1]} if isinstance(e, tuple) else dict(e) for e in events
        ]
        answer = self._request(
            "POST", f"/v1/deployments/{self._seg(deployment)}/feedback:batch", json={"events": bodies}
        )
        return [
            FeedbackResult(r["decision_id"], bool(r["counted"]))
            if "error" not in r
            else ItemError(r["index"], r["code"], r["error"])
            for r in answer["results"]
        ]

    def report(
        self,
        deployment: str,
        *,
        segment_by: Optional[str] = None,
        cuped: Optional[str] = None,
        outcome: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The deployment's report: per variant traffic, rewards, intervals, P(best), lift.
        ``segment_by`` adds the breakdown by a context feature (``report["segments"]``, with
        Bonferroni-adjusted lifts); ``cuped`` adds a fixed-weight test's differences adjusted by
        a pre-period covariate of the context (``report["cuped"]``); ``outcome`` names what
        those two compare: ``"reward"`` (the default), ``"net"`` (minus the variants' costs) or
        a declared metric."""
        asked = (("segment_by", segment_by), ("cuped", cuped), ("outcome", outcome))
        params = [(k, v) for k, v in asked if v is not None]
        return self._request("GET", f"/v1/deployments/{self._seg(deployment)}/report", params=params)

    def deployments(self) -> List[Dict[str, Any]]:
        """Every deployment with its current revision."""
        return self._request("GET", "/v1/deployments")

    # ---- registry ----------------------------------------------------------------------------

    def push_model(
        self,
        name: str,
        path: Union[str, "os.PathLike[str]"],
        *,
        description: Optional[str] = None,
        metrics: Optional[Mapping[str, float]] = None,
        training_data: Optional[str] = None,
        aliases: Sequence[str] = (),
    ) -> Dict[str, Any]:
        """Pushes the ONNX file at ``path`` as a new version of ``name`` (needs the ``registry``
        scope). The file is read twice from disk, never held in memory: once to compute its
        SHA-256, once streamed as the body with that hash, which the server checks before
        storing anything. ``aliases`` are pointed at the new version. Returns the version
        (``version``, ``content_hash``, ``signature``...)."""
        params: List[Tuple[str, str]] = []
        if description is not None:
            params.append(("description", description))
        if training_data is not None:
            params.append(("training_data", training_data))
        for key, value in (metrics or {}).items():
            params.append(("metric", f"{key}={value}"))
        for alias in aliases:
            params.append(("alias", alias))
        with open(path, "rb") as f:
            sha256, size = _file_sha256(f)
            headers = {
                SHA256_HEADER: sha256,
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
            }
            return self._request(
                "POST", f"/v1/models/{self._seg(name)}/versions", params=params, data=f, headers=headers
            )

    def list_models(self) -> List[Dict[str, Any]]:
        """Every model: name, latest version, version count, aliases."""
        return self._request("GET", "/v1/models")

    def list_versions(self, name: str) -> List[Dict[str, Any]]:
        """Every version of a model, oldest first."""
        return self._request("GET", f"/v1/models/{self._seg(name)}/versions")

    def get_version(self, name: str, version: Union[int, str] = "latest") -> Dict[str, Any]:
        """One version: a number, ``"latest"`` or ``"@alias"``."""
        return self._request("GET", f"/v1/models/{self._seg(name)}/versions/{self._seg(str(version))}")

    def set_alias(self, name: str, alias: str, version: Union[int, str], reason: Optional[str] = None) -> Dict[str, Any]:
        """Points ``alias`` of ``name`` at ``version`` (a number, ``"latest"`` or ``"@other"``);
        the move is recorded with the token's principal and ``reason``. Returns the alias; when
        the server's approvals policy holds the move for a second person (HTTP 202), returns
        ``{"status": "pending", "change": {...}, "message": ...}`` instead (see
        :meth:`approve_change`)."""
        body: Dict[str, Any] = {"version": version}
        if reason is not None:
            body["reason"] = reason
        return self._request("PUT", f"/v1/models/{self._seg(name)}/aliases/{self._seg(alias)}", json=body)

    def delete_alias(self, name: str, alias: str, reason: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Removes an alias (recorded in its history with the token's principal and ``reason``).
        Returns ``None``, or the pending change when the approvals policy holds the removal."""
        body = {"reason": reason} if reason is not None else None
        return self._request("DELETE", f"/v1/models/{self._seg(name)}/aliases/{self._seg(alias)}", json=body)

    def pending_changes(self, all: bool = False) -> List[Dict[str, Any]]:
        """Changes held for a second person (``all``: decided ones too, newest first)."""
        return self._request("GET", "/v1/changes/pending", params={"status": "all" if all else "pending"})

    def approve_change(self, change: int) -> Dict[str, Any]:
        """Approves a held change and applies it as this token's principal (who must not have
        requested it, and needs the change's own scope). Returns the decided change."""
        return self._request("POST", f"/v1/changes/pending/{int(change)}/approve")

    def reject_change(self, change: int, reason: str) -> Dict[str, Any]:
        """Closes a held change without applying it."""
        return self._request("POST", f"/v1/changes/pending/{int(change)}/reject", json={"reason": reason})

    def aliases(self, name: str) -> Dict[str, Any]:
        """A model's aliases (``aliases``) and every move of them (``history``: who, when, why)."""
        return self._request("GET", f"/v1/models/{self._seg(name)}/aliases")
