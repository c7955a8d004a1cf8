"""Channel widths read off a foreign file's tensors, as the fields of a glean-sr config.

Shared by the StyleGAN2 converters and the GLEAN state_dict reader: a file records widths per
resolution, a config describes them (a channel multiplier, NVIDIA's rule, or a table).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import nvidia_channels, stylegan2_channels
from ..errors import WeightsError

#: NVIDIA's recorded channel rule: (channel_base, channel_max).
ChannelRule = tuple[int, int]


def widths_as_fields(
    channels: Mapping[int, int], name: str, what: str, rule: ChannelRule | None = None
) -> dict[str, Any]:
    """The config fields that describe ``channels`` (resolution -> width, 4 .. resolution).

    A config-f channel multiplier is used where one gives these widths (2 preferred: below
    64 px every multiplier does), so config-f files give the same configs as ever; else NVIDIA's
    recorded ``rule``, which must give these widths; else the explicit table.
    """
    resolution = max(channels)
    if rule is not None and nvidia_channels(*rule, resolution) != dict(channels):
        raise WeightsError(
            f"{name}: the {what}'s recorded channel_base {rule[0]} and channel_max {rule[1]} "
            f"give widths {nvidia_channels(*rule, resolution)}, its tensors have "
            f"{dict(sorted(channels.items()))}"
        )
    for multiplier in (2, 1, 4, 8):
        full = stylegan2_channels(multiplier)
        if all(full[res] == width for res, width in channels.items()):
            return {"channel_multiplier": multiplier}
    if rule is not None:
        return {"channel_base": rule[0], "channel_max": rule[1]}
    return {"channel_table": dict(channels)}


__all__ = ["ChannelRule", "widths_as_fields"]
