"""SR Studio's SRResNet as a spandrel architecture, so chaiNNer, ComfyUI and anything on spandrel load our files.

    import sr_core.interop.spandrel  # registers "SRStudioSRResNet" with spandrel.MAIN_REGISTRY
    import spandrel
    model = spandrel.ModelLoader().load_from_file("sr_core/weights/srresnet_x4.safetensors")

Every shipped ``.safetensors`` and every ``save_pretrained`` folder's ``model.safetensors`` loads, with output equal
to ``sr_core.upscale``'s. Needs the extra: ``pip install "sr-studio[spandrel]"``. Detection is a pure
:class:`~spandrel.util.KeyCondition` on the key names only SR Studio's SRResNet uses (``entry``, ``trunk.<i>``
conv-BN-PReLU blocks, ``trunk_conv``/``trunk_bn``, ``upsampler.<j>``, ``exit``); no spandrel 0.4 architecture
claims them, so the registry order does not matter. Hyper-parameters come from tensor shapes. The module is laid
out as a spandrel architecture (``Architecture`` subclass, detect, load, descriptor) so it can be proposed upstream
to spandrel_extra_arches as is, with the network copied into ``__arch/`` beside its Apache-2.0 ``LICENSE``.
"""

from __future__ import annotations

from spandrel import MAIN_REGISTRY, Architecture, ArchRegistry, ArchSupport, ImageModelDescriptor, SizeRequirements
from spandrel.util import KeyCondition, get_seq_len

from ..models.srresnet import SRResNet

ARCH_ID = "SRStudioSRResNet"

DETECT_KEYS = (
    "entry.0.weight",
    "entry.0.bias",
    "entry.1.weight",
    "trunk.0.conv1.weight",
    "trunk.0.bn1.running_mean",
    "trunk.0.act.weight",
    "trunk.0.conv2.weight",
    "trunk.0.bn2.running_var",
    "trunk_conv.weight",
    "trunk_bn.running_var",
    "upsampler.0.conv.weight",
    "upsampler.0.act.weight",
    "exit.weight",
    "exit.bias",
)
"""Keys every SR Studio SRResNet state dict has (scale 2, 4 or 8; any number of blocks and channels)."""


class SRStudioSRResNetArch(Architecture[SRResNet]):
    """SRResNet (Ledig et al. 2017) as trained by SR Studio: BatchNorm residual blocks, PReLU, pixel shuffle."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="SRResNet (SR Studio)", detect=KeyCondition.has_all(*DETECT_KEYS))

    def load(self, state_dict: dict) -> ImageModelDescriptor[SRResNet]:
        channels, in_channels = (int(n) for n in state_dict["entry.0.weight"].shape[:2])  # the 9x9 head conv
        num_blocks = get_seq_len(state_dict, "trunk")
        scale = 2 ** get_seq_len(state_dict, "upsampler")
        model = SRResNet(scale=scale, num_blocks=num_blocks, channels=channels, in_channels=in_channels)
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=[f"{channels}nf", f"{num_blocks}nb"],
            supports_half=True,
            supports_bfloat16=True,
            scale=scale,
            input_channels=in_channels,
            output_channels=in_channels,
            size_requirements=SizeRequirements(),
        )


ARCHITECTURE = SRStudioSRResNetArch()


def install(registry: ArchRegistry = MAIN_REGISTRY) -> None:
    """Add the architecture to ``registry`` (spandrel's global one by default); a second call changes nothing."""
    registry.add(ArchSupport.from_architecture(ARCHITECTURE), ignore_duplicates=True)


install()

__all__ = ["ARCHITECTURE", "ARCH_ID", "DETECT_KEYS", "SRStudioSRResNetArch", "install"]
