"""The input-size rule of the twin's valid-padding U-Net, in closed form (Ronneberger et al. 2015, Fig. 1).

Same padding keeps every size; valid padding takes only the sides 2**depth k - 4 for k large enough that no map
vanishes. `unetlab.models.unet` walks the same rule step by step; the tests hold the two to the same answers.
"""

from unetlab.errors import UnetlabError


def valid_output_side(side: int, depth: int) -> int | None:
    """Output side of the valid-padding U-Net for an input side, or None when the side does not fit.

    In closed form, unlike the step-by-step walk of `unetlab.models.unet.valid_output_size` (the tests check that
    the two agree): going down, side = 2**depth (b + 8) - 4 where b is the bottleneck's side after its two convs;
    going up, each stage doubles and trims 4 px, so the output is 2**depth (b - 4) + 4. No map may vanish on the
    way up, which needs b >= 3 at depth 1 and b >= 4 deeper.
    """
    scale = 2**depth
    if (side + 4) % scale:
        return None  # some pooled map would have an odd side
    b = (side + 4) // scale - 8
    return scale * (b - 4) + 4 if b >= (3 if depth == 1 else 4) else None


def output_side(side: int, depth: int, padding: str) -> int:
    """Output side of the twin for an input side.

    Raises:
        UnetlabError: for a side a valid-padding net cannot take, naming the nearest sides it can.
    """
    if padding == "same":
        return side
    out = valid_output_side(side, depth)
    if out is None:
        scale, k_min = 2**depth, 11 if depth == 1 else 12
        k = (side + 4) // scale  # valid sides are scale * k - 4 for k >= k_min
        nearest = [scale * j - 4 for j in (k, k + 1) if j >= k_min] or [scale * k_min - 4]
        raise UnetlabError(
            f"input side {side} px does not fit the valid-padding U-Net of depth {depth} (every pooled map must be "
            f"even and no map may vanish); use {' or '.join(map(str, nearest))} px"
        )
    return out
