"""The model-from-code file MLflow logs with every Ferry model and executes when it loads one.

It is not imported by Ferry: ``mlflow.pyfunc.log_model(python_model=<this file>)`` copies it
into the model, and ``mlflow.pyfunc.load_model`` runs it, with the model's ``code/`` copy of
Ferry on the path, to obtain the model object. See ``ferry.tracking.pyfunc``.
"""

from mlflow.models import set_model

from ferry.tracking.pyfunc import FerryClassifier

set_model(FerryClassifier())
