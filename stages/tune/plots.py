"""Study plots with optuna.visualization: PNG (matplotlib backend) and HTML (plotly)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

log = logging.getLogger("reprolab.tune")


def write_plots(study: optuna.Study, out_dir: Path, multi_objective: bool) -> list[Path]:
    """Write history, importances, parallel coordinate, timeline, and the intermediate values
    (single objective) or the Pareto front (several), as PNG and HTML."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    target = (lambda t: t.values[0]) if multi_objective else None
    name = study.metric_names[0] if study.metric_names else "objective"
    kinds = {
        "history": "plot_optimization_history",
        "importances": "plot_param_importances",
        "parallel_coordinate": "plot_parallel_coordinate",
    }
    if multi_objective:
        kinds = {**kinds, "pareto_front": "plot_pareto_front"}
    else:  # what the pruner did: each trial's val metric per epoch (none when multi-objective)
        kinds = {**kinds, "intermediate_values": "plot_intermediate_values"}
    kinds = {**kinds, "timeline": "plot_timeline"}  # trials over time, per worker
    whole = ("pareto_front", "intermediate_values", "timeline")  # take no target
    written = []
    for kind, fn in kinds.items():
        kwargs = {} if kind in whole else {"target": target, "target_name": name}
        try:
            getattr(pv, fn)(study, **kwargs).write_html(
                out_dir / f"{kind}.html", include_plotlyjs=True
            )
            ax = getattr(pm, fn)(study, **kwargs)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out_dir / f"{kind}.png", dpi=90)
            plt.close(fig)
            written += [out_dir / f"{kind}.html", out_dir / f"{kind}.png"]
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # e.g. importances need >= 2 completed trials with varying params
            log.warning("plot %s skipped: %s", kind, exc)
    return written
