"""The pyfunc model a registered Ferry version is: raw texts or images in, label names out
(or, with ``params={"output": "probabilities"}``, one row per input with the prediction, its
confidence and every class's calibrated probability: what ``ferry predict`` writes and
``ferry serve`` answers, from this same code).

It is logged *from code* (``model_code.py`` sets an instance of ``FerryClassifier``), not as a
pickled Python object: loading a model from the registry then runs this reviewed source from
the model's own ``code/`` copy of Ferry, never a CloudPickle payload. The weights are the
model folder (safetensors) logged as the ``model`` artifact, rebuilt by the modality's loader.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

INPUT_EXAMPLE = ["A gripping, beautifully acted film."]
OUTPUTS = ("labels", "probabilities")
# A params schema is what lets MLflow (and its scoring protocol's "params") pass ``output``
# through; without one MLflow drops every param with a warning.
PARAMS = ParamSchema([ParamSpec("output", DataType.string, "labels")])
# Declared, not inferred: inference would load the model and run it once more at log time.
TEXT_SIGNATURE = ModelSignature(inputs=Schema([ColSpec(DataType.string)]),
                                outputs=Schema([ColSpec(DataType.string)]), params=PARAMS)


class FerryClassifier(mlflow.pyfunc.PythonModel):
    """Texts (a list, a Series or a one-column DataFrame) or images (file paths, encoded
    bytes, HxW / HxWxC uint8 arrays, or an N x H x W (x C) array) -> label names. Each input
    gets the model's own tokenization or resizing and normalisation, exactly as in evaluation.

    MLflow's type-hint validation is off (as for its own ChatModel): text inputs are checked
    against the declared signature, images by ``_image_arrays`` (one type hint cannot say
    "path, bytes or array"). ``predict`` is left unannotated for the same reason: MLflow
    infers a schema from any annotation it finds and warns when it cannot.
    """

    _skip_type_hint_validation = True
    # Image inputs may name files on this machine (batch scoring, notebooks). ``ferry serve``
    # turns this off: an HTTP client must not make the server open its own files.
    local_paths = True

    def load_context(self, context: Any) -> None:
        import torch

        from ferry.transfer.modality import of_folder

        folder = Path(context.artifacts["model"])
        self.folder = folder  # what else was stored with the model (the drift reference)
        self.modality = of_folder(folder)
        self.model, self.processor, self.meta = self.modality.load(folder)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    def predict(self, context, model_input, params=None):  # unannotated: see the class doc
        """Label names, one per input, in input order. Multi-label: a list of labels per
        input (those above their tuned thresholds). Several tasks: a DataFrame with one
        column per task, in the tasks' order. ``params={"output": "probabilities"}``: the
        ``table`` of predictions and calibrated probabilities instead."""
        output = (params or {}).get("output") or "labels"
        if output not in OUTPUTS:
            raise ValueError(f"params.output: expected one of {list(OUTPUTS)}, got {output!r}")
        logits, _ = self.forward(model_input)
        return table(self.meta, logits) if output == "probabilities" else \
            answers(self.meta, logits)

    def forward(self, model_input: Any, embeddings: bool = False, batch_size: int = 64,
                desc: str | None = None) -> tuple[Any, Any]:
        """Logits of raw inputs in input order, and (``embeddings``) the backbone's pooled
        features from the same pass: batch scoring tests them for drift against the
        reference stored with the model, so they must come from this very network."""
        from ferry.models.tasks import Layout
        from ferry.transfer.inference import run

        items = _texts(model_input) if self.meta.modality == "text" else \
            _image_arrays(model_input, self.meta.size, self.local_paths)
        data = self.modality.encode_inputs(self.processor, self.meta, items)
        width = Layout.from_meta(self.meta).width
        fn = _with_features(self.model) if embeddings else self.model
        out = run(fn, self.modality.batches(data, batch_size, None, self.device), len(data),
                  self.device, desc)
        return (out[:, :width], out[:, width:]) if embeddings else (out, None)


def _with_features(model: Any) -> Any:
    """The model as one function returning logits and pooled features side by side."""
    import torch

    def both(batch: dict) -> Any:
        feats = model.embed(batch)
        return torch.cat([model.head({"features": feats}), feats], 1)

    return both


def answers(meta: Any, logits: Any) -> Any:
    """The model's outputs from its logits, as its task layout says."""
    import pandas as pd

    from ferry.models.tasks import Layout

    layout = Layout.from_meta(meta)
    if layout.classic:
        return [meta.labels[i] for i in logits.argmax(1).tolist()]
    probs = layout.probabilities(logits)
    if len(layout.tasks) == 1:
        return layout.decide(0, probs[0])
    return pd.DataFrame({t.name: layout.decide(i, probs[i]) for i, t in enumerate(layout.tasks)})


def table(meta: Any, logits: Any) -> Any:
    """One row per input: ``prediction``, ``confidence`` (the top probability) and
    ``proba.<label>`` for every class, with the model's calibrated probabilities (its
    temperature; multi-label: per-label sigmoids and tuned thresholds). Several tasks: the
    same columns per task, prefixed ``<task>.``."""
    import pandas as pd

    from ferry.models.tasks import Layout

    layout = Layout.from_meta(meta)
    probs = layout.probabilities(logits)
    columns: dict[str, Any] = {}
    for i, task in enumerate(layout.tasks):
        stem = "" if len(layout.tasks) == 1 else f"{task.name}."
        columns[f"{stem}prediction"] = layout.decide(i, probs[i])
        if not task.multi:
            columns[f"{stem}confidence"] = probs[i].max(1)
        for k, label in enumerate(task.labels):
            columns[f"{stem}proba.{label}"] = probs[i][:, k]
    return pd.DataFrame(columns)


def _texts(model_input: Any) -> list[str]:
    """pyfunc hands over what the signature says (a one-column frame); accept lists too."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0]
    return [str(t) for t in list(model_input)]


def _image_arrays(model_input: Any, size: int, local_paths: bool = True):
    """Model input as N x 3 x size x size uint8, with a clear error for anything else."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ferry.data.images import open_rgb, to_array

    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0]
    if isinstance(model_input, np.ndarray) and model_input.dtype != object:
        model_input = [model_input] if model_input.ndim in (2, 3) and (
            model_input.ndim == 2 or model_input.shape[-1] in (1, 3, 4)) else list(model_input)
    out = []
    for i, item in enumerate(list(model_input)):
        if local_paths and (isinstance(item, Path) or
                            (isinstance(item, str) and os.path.isfile(item))):
            image = open_rgb(item)
        elif isinstance(item, str):  # JSON clients (the scoring protocol) send base64
            image = open_rgb(io.BytesIO(_base64(item, i)))
        elif isinstance(item, bytes):
            image = open_rgb(io.BytesIO(item))
        elif isinstance(item, np.ndarray) and item.ndim in (2, 3):
            image = Image.fromarray(np.asarray(item, dtype=np.uint8).squeeze()).convert("RGB")
        else:
            raise ValueError(f"input {i}: expected an image file path, encoded image bytes "
                             "(base64 in JSON) or "
                             f"an HxW / HxWxC uint8 array, got {type(item).__name__}")
        out.append(to_array(image, size))
    if not out:
        raise ValueError("no images given")
    return np.stack(out)


def _base64(text: str, i: int) -> bytes:
    """A base64-encoded image, or a clear error (a path that is not there reads as one)."""
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"input {i}: {text[:80]!r} is neither an image file on this machine "
                         "nor base64-encoded image bytes") from None


def log_kwargs(image: bool, meta: Any = None) -> dict[str, Any]:
    """Signature and example for text (string in; a string, a list of strings per multi-label
    task, one named column per task); images are checked by the wrapper itself (one column
    signature cannot say "path or array")."""
    if image:
        return {"signature": ModelSignature(params=PARAMS)}
    tasks = (meta.tasks or []) if meta is not None else []
    if not tasks:
        return {"input_example": INPUT_EXAMPLE, "signature": TEXT_SIGNATURE}
    outputs = [ColSpec(Array(DataType.string) if t["multi"] else DataType.string,
                       t["name"] if len(tasks) > 1 else None) for t in tasks]
    return {"input_example": INPUT_EXAMPLE,
            "signature": ModelSignature(inputs=TEXT_SIGNATURE.inputs, outputs=Schema(outputs),
                                        params=PARAMS)}
