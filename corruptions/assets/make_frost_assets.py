"""Regenerate the bundled frost textures (a maintenance script, not imported by the package).

The CIFAR-10-C generator (``ImageNet-C/create_c/make_cifar_c.py`` in github.com/hendrycks/robustness) loads
``frost1.png .. frost5.jpg`` (``np.random.randint(5)``: frost6 is never used), shrinks them with
``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`` (bilinear) and crops 32x32 pieces. This script applies that exact
resize to the photographs shipped in the ``imagecorruptions`` wheel (Apache-2.0) and stores the results as
lossless RGB PNGs next to it, so the package needs neither OpenCV nor ``imagecorruptions`` at run time.

Usage: ``python corruptions/assets/make_frost_assets.py`` (needs ``imagecorruptions`` and ``opencv-python``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
from PIL import Image

NAMES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def main() -> None:
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or spec.origin is None:
        raise SystemExit("imagecorruptions is not installed (pip install imagecorruptions)")
    src = Path(spec.origin).parent / "frost"
    out = Path(__file__).parent
    for i, name in enumerate(NAMES, 1):
        bgr = cv2.imread(str(src / name))
        small = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)
        Image.fromarray(small[..., ::-1].copy()).save(out / f"frost{i}_cifar.png", optimize=True)
        print(f"frost{i}_cifar.png", small.shape)


if __name__ == "__main__":
    main()
