"""Generate the example own-data sources shipped in data/raw/examples/.

    python examples/make_examples.py

- houses.csv: a table with numeric and categorical columns and missing values; target
  `price` (regression) or `sold_fast` (yes/no classification).
- shapes/: a PNG folder, one sub-folder per class (circle, square, triangle), in mixed
  sizes (20x20 and 28x28) and modes (grayscale and RGB), none of them 8x8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "data" / "raw" / "examples"


def make_houses(path: Path, n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.normal(120, 35, n).clip(30, None).round(1)
    rooms = rng.integers(1, 7, n)
    hood = rng.choice(["north", "south", "east", "west", "centre"], n)
    condition = rng.choice(["new", "good", "fair", "poor"], n, p=[0.2, 0.4, 0.3, 0.1])
    bonus = (
        pd.Series(hood)
        .map({"centre": 60, "north": 20, "south": 0, "east": -10, "west": 10})
        .to_numpy()
    )
    price = 1.8 * area + 15 * rooms + bonus + rng.normal(0, 20, n)
    frame = pd.DataFrame(
        {
            "area": area,
            "rooms": rooms,
            "neighborhood": hood,
            "condition": condition,
            "year_built": rng.integers(1950, 2024, n),
            "price": price.round(1),
        }
    )
    frame["sold_fast"] = np.where(price > np.median(price), "yes", "no")
    for col, frac in (("area", 0.05), ("neighborhood", 0.08), ("condition", 0.05)):
        frame.loc[rng.random(n) < frac, col] = None
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def make_shapes(
    root: Path,
    per_class: int = 40,
    seed: int = 0,
    sizes: tuple[int, ...] = (20, 28),
    modes: tuple[str, ...] = ("L", "RGB"),
) -> None:
    rng = np.random.default_rng(seed)
    for cls in ("circle", "square", "triangle"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = int(sizes[i % len(sizes)])
            mode = modes[(i // len(sizes)) % len(modes)]
            img = Image.new(mode, (size, size), 0)
            draw = ImageDraw.Draw(img)
            r = size * rng.uniform(0.25, 0.4)
            cx, cy = size / 2 + rng.uniform(-2, 2, 2)
            fill = (255, int(rng.integers(120, 256)), 80) if mode == "RGB" else 255
            box = [cx - r, cy - r, cx + r, cy + r]
            if cls == "circle":
                draw.ellipse(box, fill=fill)
            elif cls == "square":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
            img.save(root / cls / f"{cls}_{i:03d}.png")


if __name__ == "__main__":
    make_houses(OUT / "houses.csv")
    make_shapes(OUT / "shapes")
    print(f"wrote examples to {OUT}")
