"""reprolab pipeline stages: one module per DVC stage plus shared plumbing."""

import os as _os

# `python -m stages.<x>` under `python -m stages.runtime.warm -- ...`: forked from the warm
# interpreter instead of importing its libraries again (stages/runtime/warm_client.py);
# returns, and the stage runs here, wherever that cannot be done
if _os.environ.get("REPROLAB_WARM_SOCKET"):
    from stages.runtime.warm_client import hand_off as _hand_off

    _hand_off()
