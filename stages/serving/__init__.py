"""The served model's runtime: raw rows, images or arrays in; labels/probabilities/values out.

Not a stage: the package stage copies this code into the MLflow model it writes, and the
model loads it again wherever it is served (`mlflow.pyfunc.load_model`,
`python -m stages.predict`, `mlflow models serve`).
"""
