"""Save a picture of the U-Net paper's weight map (Ronneberger et al. 2015, eq. 2 and Fig. 3) on synthetic cells.

    python scripts/plot_weight_map.py                       # docs/images/weight_map.png
    python scripts/plot_weight_map.py --index 3 --w0 10 --sigma 5 --out weight_map.png

Three panels: the image, its cells (instances), and the weight map w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2).
Needs matplotlib (`pip install -e ".[plot]"`).
"""

import argparse
import io
from pathlib import Path

from PIL import Image

from unetlab.data.synthetic import generate_cell_instances
from unetlab.data.weight_map import border_weight_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="synthetic cells image index")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--w0", type=float, default=10.0, help="border weight w0 (paper: 10)")
    parser.add_argument("--sigma", type=float, default=5.0, help="border width sigma in pixels (paper: 5)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images/weight_map.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, instances = generate_cell_instances(args.index, size=args.size)
    weight = border_weight_map((instances > 0).astype(int), instances, w0=args.w0, sigma=args.sigma)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4), constrained_layout=True)
    axes[0].imshow(image[0], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("synthetic cells")
    axes[1].imshow(instances, cmap="tab20", interpolation="nearest")
    axes[1].set_title(f"{instances.max()} cells (instances)")
    shown = axes[2].imshow(weight, cmap="jet", interpolation="nearest")
    axes[2].set_title(f"weight map, w0 = {args.w0:g}, sigma = {args.sigma:g} px")
    fig.colorbar(shown, ax=axes[2], shrink=0.85)
    for ax in axes:
        ax.set_axis_off()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(128).save(args.out, optimize=True)  # a 128-colour PNG stays small
    print(f"wrote {args.out} (weights {weight.min():.2f} .. {weight.max():.2f})")


if __name__ == "__main__":
    main()
