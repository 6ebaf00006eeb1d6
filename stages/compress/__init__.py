"""compress stage: pruned, INT8 and distilled variants of the trained network, measured."""
