"""Tree models grown within a file-size budget (`baselines.max_model_mb`).

A fully grown tree has about one leaf per distinct training row when the target is
continuous or noisy, and a random forest keeps 200 of them: 940 MB for a 54k-row regression
table, and a 14 GB peak while fitting the 200k-row sample of a 10^6-row table. Every node is
one 64-byte record (children, feature, threshold, impurity, counts) plus its value (8 bytes
per class, or one for regression), so a tree's size is known from its node count.

`grow_within` fits one tree of the forest first (1/n_estimators of the fit) and projects
the forest's size from it. Within the budget nothing changes. Over it, the forest keeps
fewer trees (down to `MIN_TREES`), fully grown when they fit, and otherwise also caps
every tree's leaves (`max_leaf_nodes`: sklearn then grows each tree best-first, the most
impurity-reducing splits first): measured on 50k-row tables, 50 deeper trees beat 200
shallower ones of the same total size (RESULTS.md). A single tree that outgrows the budget
is refit with capped leaves. Hyperparameters that already bound the trees'
size (`max_leaf_nodes`, `max_depth`) are the user's call and left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NODE_BYTES = 64  # sklearn.tree._tree NODE_DTYPE itemsize
TREE_OVERHEAD = 16 << 10  # per tree in a skops file: its entry in schema.json, .npy headers
SIZE_SETTINGS = ("max_leaf_nodes", "max_depth")  # set by the user: the budget stays out
MIN_TREES = 50  # a forest over budget keeps at least this many trees (if it had them)


def node_bytes(n_classes: int) -> int:
    """Bytes one tree node stores: its record and its value (8 per class, 1 for regression)."""
    return NODE_BYTES + 8 * max(1, n_classes)


def tree_bytes(node_count: int, n_classes: int) -> int:
    """Bytes a fitted tree of `node_count` nodes stores (as skops writes its arrays)."""
    return TREE_OVERHEAD + node_count * node_bytes(n_classes)


def grow_within(est: Any, X: np.ndarray, y: np.ndarray, budget_mb: float | None, fit, name: str):
    """`fit(est, X, y)`, keeping a tree model's fitted size within `budget_mb` (None: off).

    Returns the fitted model and a note (None when the model was left as configured).
    """
    params = est.get_params()
    bounded = any(params.get(k) is not None for k in SIZE_SETTINGS)
    if budget_mb is None or bounded or not _is_tree_model(est):
        return fit(est, X, y), None
    budget = budget_mb * 2**20
    n_classes = len(np.unique(y)) if hasattr(est, "predict_proba") else 1
    trees = int(params.get("n_estimators", 1) or 1)
    if trees > 1:  # one tree of the forest, on the same rows, predicts the forest's size
        probe = fit(_clone(est, n_estimators=1, n_jobs=1), X, y)
        per_tree = tree_bytes(probe.estimators_[0].tree_.node_count, n_classes)
        if trees * per_tree <= budget:
            return fit(est, X, y), None
    else:
        model = fit(est, X, y)
        per_tree = tree_bytes(model.tree_.node_count, n_classes)
        if per_tree <= budget:
            return model, None
    room = 0.95 * budget  # 5% left for the rest of the file
    # fewer, deeper trees first: past a few dozen trees a forest gains little from more of
    # them, while a tree cut short loses what its last splits would have fit
    kept = min(trees, max(MIN_TREES, int(room // per_tree)))
    changes = {"n_estimators": kept} if kept < trees else {}
    what = f"{kept} fully grown trees"
    if kept * per_tree > room:
        leaves = max(2, int(((room / kept - TREE_OVERHEAD) / node_bytes(n_classes) + 1) // 2))
        changes["max_leaf_nodes"] = leaves
        what = f"{kept} tree(s) of at most {leaves:,} leaves"
    note = (
        f"model={name}: {trees} fully grown tree(s) would store "
        f"~{trees * per_tree / 2**20:,.1f} MB; fit as {what} ({_settings(changes)}) to stay "
        f"within baselines.max_model_mb = {budget_mb:g} (null: fully grown as configured)"
    )
    return fit(est.set_params(**changes), X, y), note


def _settings(changes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def _is_tree_model(est: Any) -> bool:
    """A single decision tree, or a forest of bagged ones: models whose size grows with the
    rows (boosting's trees are shallow, set by max_depth / max_leaf_nodes already)."""
    from sklearn import ensemble
    from sklearn.tree import BaseDecisionTree

    forests = (
        ensemble.RandomForestClassifier,
        ensemble.RandomForestRegressor,
        ensemble.ExtraTreesClassifier,
        ensemble.ExtraTreesRegressor,
    )
    return isinstance(est, (BaseDecisionTree, *forests))


def _clone(est: Any, **params):
    from sklearn.base import clone

    return clone(est).set_params(**params)
