"""MLflow's scoring protocol, spoken by ``ferry serve`` with MLflow's own parser and encoder.

``mlflow models serve`` reads ``POST /invocations`` bodies as JSON (``inputs``,
``instances``, ``dataframe_split``, ``dataframe_records``, plus ``params``), CSV or Parquet,
and answers ``{"predictions": ...}``. Ferry's server batches requests across clients and
follows a registry alias, so it cannot be MLflow's server; it parses and encodes through the
functions of ``mlflow.pyfunc.scoring_server`` instead of a copy of them, so a client of one
cannot tell the two apart, and a protocol change in MLflow reaches both. This module is the
glue, here because only ``ferry.tracking`` may import MLflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"


class ProtocolError(Exception):
    """A request the protocol refuses: ``status`` and an MLflow-style JSON ``body``."""

    def __init__(self, status: int, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status, self.code = status, code

    @property
    def body(self) -> str:
        return error_json(self.code, str(self))


@dataclass
class Parsed:
    """One request's inputs as MLflow hands them to ``predict``, and its params."""

    data: Any
    params: dict[str, Any] | None
    unwrapped: bool  # MLflow's unified-LLM JSON: answered without the "predictions" key


def error_json(code: str, message: str) -> str:
    """What MLflow's server answers on an error, without its stack trace (clients get the
    reason; the server's log keeps the rest)."""
    return json.dumps({"error_code": code, "message": message})


def parse(body: bytes, content_type: str | None, model: Any) -> Parsed:
    """A request body as MLflow's scoring server parses it for ``model`` (its signature's
    input schema casts the inputs). A missing content type reads as JSON (``curl -d`` users
    forget it); other types MLflow does not accept are a 415 as there."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server as ss

    mime = _content_type(content_type)
    schema = model.metadata.get_input_schema()
    try:
        if mime == JSON:
            parsed = ss._parse_json_data(_json(body), model.metadata, schema)
            return Parsed(parsed.data, parsed.params, parsed.is_unified_llm_input)
        if mime == CSV:
            import io

            return Parsed(ss.parse_csv_input(io.StringIO(_text(body)), schema), None, False)
        if mime == PARQUET:
            import io

            return Parsed(ss.parse_parquet_input(io.BytesIO(body)), None, False)
    except MlflowException as exc:
        raise ProtocolError(exc.get_http_status_code(), _first_line(exc.message),
                            exc.error_code) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(400, f"could not read the request: {_first_line(str(exc))}") \
            from None
    raise ProtocolError(415, f"content type {mime!r} is not supported; send one of "
                        f"{[JSON, CSV, PARQUET]}", "BAD_REQUEST")


def _content_type(content_type: str | None) -> str:
    parts = [p.strip() for p in (content_type or JSON).split(";")]
    extra = dict(p.partition("=")[::2] for p in parts[1:])
    if extra.get("charset", "utf-8").lower() != "utf-8":
        raise ProtocolError(415, "the scoring server only supports UTF-8")
    if unknown := set(extra) - {"charset"}:
        raise ProtocolError(415, f"unrecognized content type parameters: {sorted(unknown)}")
    mime = parts[0].lower()
    return JSON if mime in ("", "application/x-www-form-urlencoded") else mime


def _json(body: bytes) -> dict:
    """The decoded JSON object (MLflow's own decoder would decode it a second time)."""
    from mlflow.pyfunc import scoring_server as ss

    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise ProtocolError(400, f"{ss.REQUIRED_INPUT_FORMAT}. Received "
                            f"{type(decoded).__name__}.")
    return decoded


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(400, f"the body is not UTF-8: {exc}") from None


def render(predictions: Any, unwrapped: bool = False) -> str:
    """Predictions as MLflow's server writes them (``{"predictions": ...}``; DataFrames as
    records), through its own encoder (numpy types, NaN and all)."""
    import io

    from mlflow.pyfunc import scoring_server as ss

    out = io.StringIO()
    (ss.unwrapped_predictions_to_json if unwrapped else ss.predictions_to_json)(predictions, out)
    return out.getvalue()


def failure(exc: BaseException) -> ProtocolError:
    """A predict that raised, as the client's error: the model refused these inputs (a bad
    image, a wrong param), so a 400 with the model's own one-line reason."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return ProtocolError(exc.get_http_status_code(), _first_line(exc.message),
                             exc.error_code)
    return ProtocolError(400, f"the model could not score these inputs: "
                         f"{type(exc).__name__}: {_first_line(str(exc))}")


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:500] if (text or "").strip() else "error"


def modality(model: Any) -> str:
    """``text`` or ``image``: a Ferry pyfunc knows; for any other model, a declared input
    schema means text-like inputs."""
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else None
    meta = getattr(inner, "meta", None)
    if meta is not None:
        return meta.modality
    return "text" if model.metadata.get_input_schema() is not None else "image"


def smoke_inputs(model: Any) -> tuple[Any, dict[str, Any] | None]:
    """A small input the model must score before it may serve (the logged text example, or
    two generated images: a grey one and a gradient), and ``params`` asking for
    probabilities when the model's signature declares that param (older versions do not)."""
    schema = model.metadata.get_params_schema()
    names = {p.name for p in schema.params} if schema else set()
    params = {"output": "probabilities"} if "output" in names else None
    if modality(model) == "text":
        from ferry.tracking.pyfunc import INPUT_EXAMPLE

        return list(INPUT_EXAMPLE), params
    import numpy as np

    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    return [np.full((32, 32, 3), 128, np.uint8), np.stack([ramp, ramp.T, ramp], -1)], params
