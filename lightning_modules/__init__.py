"""Everything torch: networks, LightningModules, DataModule, batch/offline augmentation.

Takes plain arguments only; knows nothing about DVC, MLflow paths or params.yaml.
"""
