"""Attention U-Net: the U-Net with an additive attention gate on every skip connection.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, eq. 1 and Fig. 2.
The gate (`blocks.AttentionGate`) scales each encoder map by coefficients alpha in (0, 1) computed from the map
itself and the decoder map it is joined with, so that the decoder can suppress irrelevant regions.
Everything else (blocks, knobs, input-size rules) is the `UNet`'s.
"""

import torch

from unetlab.models.blocks import AttentionGate
from unetlab.models.unet import UNet


class AttentionUNet(UNet):
    """`UNet` with an `AttentionGate` on each skip; the constructor takes exactly the `UNet`'s arguments.

    `attention_maps(image)` returns the gates' coefficients, for inspection.
    """

    architecture = "attention-unet"
    gated = True

    def attention_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model on `image` and return each decoder stage's attention coefficients.

        Returns:
            {"dec4": alpha, ..., "dec1": alpha}, each alpha of shape (N, 1, H_l, W_l) with values in (0, 1),
            at the resolution of that stage's skip (after the crop, for valid padding).
        """
        maps: dict[str, torch.Tensor] = {}
        hooks = []
        for name, stage in self.named_stages():
            gate = getattr(stage, "gate", None)
            if isinstance(gate, AttentionGate):
                hooks.append(gate.register_forward_hook(lambda _m, _in, out, name=name: maps.__setitem__(name, out[1])))
        try:
            with torch.no_grad():
                self(image)
        finally:
            for hook in hooks:
                hook.remove()
        return maps
