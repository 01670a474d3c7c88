"""Make docs/images/isbi_overlay.png: membranes predicted on a held-out ISBI 2012 slice, drawn over the image.

    python docs/make_isbi_overlay.py                 # data in ../shared/data/isbi2012-membrane, ~10 min on 2 CPU cores
    python docs/make_isbi_overlay.py --steps 50      # a quicker, rougher fit

A stand-in until `unetlab train` lands: a short hand-written fit of the default training model
(`unet`, base_channels 16, depth 4, one sigmoid logit for "membrane") on slices 0-28, then the library's own
`Predictor` (overlap-tile, the checkpoint's normalisation and class values) and `overlay` on slice 29. Prints the
held-out Dice of the membrane class. The data is read in place and never copied into the repository.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unetlab import Predictor, create_model
from unetlab.checkpoint import save_checkpoint
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask
from unetlab.outputs import overlay

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "isbi2012-membrane")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--crop", type=int, default=128, help="training crop side, px")
    parser.add_argument("--batch", type=int, default=8, help="crops per step")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "isbi_overlay.png")
    args = parser.parse_args()

    names = [f"{i}.png" for i in range(30)]
    images = np.stack([read_image(args.data / "images" / n) for n in names]).astype(np.float32) / 255  # (30, H, W)
    membrane = np.stack([read_mask(args.data / "masks" / n) == 0 for n in names]).astype(np.float32)  # 0 = membrane
    train_x, train_y = torch.from_numpy(images[:29]), torch.from_numpy(membrane[:29])
    mean, std = float(train_x.mean()), float(train_x.std())
    # class 0 = cell (mask value 255), class 1 = membrane (mask value 0): the sigmoid predicts membrane
    info = DataInfo(1, [255, 0], class_names=["cell", "membrane"], mean=[mean], std=[std])

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model("unet", base_channels=16, depth=4, in_channels=1, num_classes=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:  # cosine decay to 0
            group["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * step / args.steps))
        x, y = random_crops(train_x, train_y, args.crop, args.batch, rng)  # (B, 1, c, c) each
        loss = F.binary_cross_entropy_with_logits(model((x - mean) / std), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f} s", flush=True)

    checkpoint = args.out.with_suffix(".pt")
    save_checkpoint(checkpoint, model, info, threshold=0.5)
    result = Predictor(checkpoint, device="cpu")(images[29])  # float image in [0, 1], as in training
    checkpoint.unlink()
    truth = membrane[29] > 0
    pred = result.classes == 1
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    print(
        f"held-out slice 29: membrane Dice {dice:.3f}, membrane fraction {pred.mean():.3f} (truth {truth.mean():.3f})"
    )
    picture = Image.fromarray(overlay(read_image(args.data / "images" / names[29]), result.classes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.quantize(64, dither=Image.Dither.NONE).save(args.out, optimize=True)  # 64 colours: 190 KB, not 460
    print(f"wrote {args.out}")


def random_crops(images, masks, crop, batch, rng):
    """`batch` random crops with random flips and 90-degree rotations: (B, 1, crop, crop) images and masks."""
    xs, ys = [], []
    for _ in range(batch):
        i = rng.integers(len(images))
        top, left = rng.integers(images.shape[1] - crop + 1), rng.integers(images.shape[2] - crop + 1)
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        pair = torch.stack([images[i], masks[i]])[:, top : top + crop, left : left + crop]  # (2, c, c)
        pair = torch.rot90(pair, k, (1, 2))
        pair = pair.flip(2) if flip else pair
        xs.append(pair[:1])
        ys.append(pair[1:])
    return torch.stack(xs), torch.stack(ys)


if __name__ == "__main__":
    main()
