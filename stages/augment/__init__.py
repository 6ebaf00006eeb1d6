"""augment stage: offline, seeded augmentation of the rows models are fit on."""
