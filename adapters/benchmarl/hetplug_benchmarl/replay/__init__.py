"""hetplug's replay inside TorchRL's buffer: a fixed trajectory layout, a Writer that places
trajectories at hetplug's slots, a Sampler that draws by priority and takes TD errors back,
the buffer that reads BenchMARL's TD errors, and LBS's buffer."""

from hetplug_benchmarl.replay.sampler import SLOT_KEY, STEP_KEY, WEIGHT_KEY

__all__ = ["SLOT_KEY", "STEP_KEY", "WEIGHT_KEY"]
