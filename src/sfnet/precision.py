"""Numeric precision and memory format of training and inference: bf16 autocast, channels-last.

:func:`choose_precision` decides once per run from what the device offers:

- CUDA: bf16 autocast and channels-last on (the ``auto`` default) from
  :data:`CUDA_BF16_MIN_BATCH` images per device and step; fp32 below, where a step is
  launch-bound and autocast's casts make it slower (measured on an H200).
- CPU: channels-last on vectorised CPUs (torch capability AVX2/AVX512/AMX) and fp32. bf16
  autocast is opt-in (``amp = true``) and runs where the processor computes bf16 natively
  (AVX512-BF16 or AMX, as torch reports them; oneDNN then runs a training step ~2x faster than
  fp32). It was the default on such CPUs until issue 17's rule (keep it only if, on the stable
  recipe, its 8-seed mean is within half a standard error of fp32's and its spread no wider)
  could not be shown to hold: the only 8-seed measurement (paper recipe) has bf16 0.1143 +-
  0.0082 dex against fp32 0.1124 +- 0.0034 (README, "CPU precision"). The choice depends only
  on the processor and the settings, never on a timing, so a run is reproducible on the same
  machine.

``amp`` / ``channels_last`` are ``"auto"``, True (force on) or False (force fp32 / contiguous).
Forcing bf16 on a CPU that cannot run it logs one warning and runs fp32. The loss is always
computed in fp32 (:func:`sfnet.train.rmse_loss` casts).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger("sfnet.precision")

#: A setting of ``TrainConfig.amp`` / ``TrainConfig.channels_last``.
Choice = bool | str
#: torch CPU capabilities on which ``auto`` turns channels-last on.
VECTOR_CPUS = ("AVX2", "AVX512", "AMX")


@dataclass(frozen=True)
class Precision:
    """How tensors are computed.

    Attributes:
        autocast_dtype: ``torch.bfloat16`` for autocast, None for plain fp32.
        channels_last: images and weights in channels-last (NHWC) memory format.
        reason: one line saying why (what was asked, what the device offers, the benchmark).
        device_type: ``cpu`` or ``cuda``.
    """

    autocast_dtype: torch.dtype | None
    channels_last: bool
    reason: str
    device_type: str = "cpu"

    @property
    def name(self) -> str:
        """``bf16+channels_last``, ``fp32``, ... for logs and benchmarks."""
        dtype = "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"
        return dtype + ("+channels_last" if self.channels_last else "")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Context in which forward passes run at this precision (a no-op for fp32)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype):
            yield

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) batch in this memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model (moved in place) in this memory format."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def to_dict(self) -> dict[str, Any]:
        """What ``model.json`` records: ``{"autocast": "bfloat16"|"float32", "channels_last",
        "reason"}``."""
        dtype = "bfloat16" if self.autocast_dtype == torch.bfloat16 else "float32"
        return {"autocast": dtype, "channels_last": self.channels_last, "reason": self.reason}


FP32 = Precision(None, False, "fp32, contiguous")


def parse_choice(value: Any, option: str) -> Choice:
    """``auto``/True/False from a config or CLI value ("true", "false", "auto", bools)."""
    if isinstance(value, bool) or value == "auto":
        return value
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[text]
    raise ValueError(f"{option} must be auto, true or false, got {value!r}")


def cpu_bf16_support() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX, which oneDNN uses for bf16
    convolutions; older AVX512 CPUs only emulate it), and torch's capability name."""
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        ok = bool(native and torch.backends.mkldnn.is_available())
    except (AttributeError, RuntimeError):  # an older torch: assume no
        ok = False
    return ok, capability


#: On CUDA, ``auto`` turns bf16 autocast + channels-last on from this many images per device
#: and per step. Measured on an H200 (docs/results/gpu-h200.md): at batch 64 a resnet18 step
#: is launch-bound and bf16's cast kernels make it slower than fp32 (4,399 vs 5,736 images/s);
#: at batch 256 bf16 + channels-last is 1.56x faster (17,335 vs 11,101).
CUDA_BF16_MIN_BATCH = 128


def choose_precision(
    device: torch.device | str,
    amp: Any = "auto",
    channels_last: Any = "auto",
    batch_size: int | None = None,
) -> Precision:
    """The precision to train or run a model with on ``device``.

    Args:
        device: where the model runs.
        amp: ``auto`` (bf16 on CUDA from :data:`CUDA_BF16_MIN_BATCH` images per step; fp32
            on CPUs), True (force it; a CPU without native bf16 support logs a warning and
            runs fp32) or False (fp32).
        channels_last: ``auto``, True or False, likewise (``auto`` follows ``amp`` on CUDA).
        batch_size: images per step on this device (the per-process batch); None (unknown,
            e.g. inference) counts as large.
    """
    device_type = torch.device(device).type
    amp, channels_last = parse_choice(amp, "amp"), parse_choice(channels_last, "channels_last")
    if device_type != "cpu":
        large = batch_size is None or batch_size >= CUDA_BF16_MIN_BATCH
        use_amp = amp is True or (amp == "auto" and large)
        use_cl = channels_last is True or (channels_last == "auto" and use_amp)
        reason = f"{device_type}: amp={amp}, channels_last={channels_last}"
        if batch_size is not None and "auto" in (amp, channels_last):
            size = "large" if large else "small"
            reason += (
                f"; batch {batch_size} per device is {size} (bf16 + channels-last from "
                f"{CUDA_BF16_MIN_BATCH}, measured)"
            )
        return Precision(torch.bfloat16 if use_amp else None, use_cl, reason, device_type)
    supported, capability = cpu_bf16_support()
    if amp is True and not supported:
        log.warning(
            "--amp: this CPU (torch capability %s) has no native bf16 (AVX512-BF16 or AMX); "
            "running in fp32 instead",
            capability,
        )
    # bf16 only when asked for (and the CPU computes it natively): ~2x faster, but on the
    # measurements so far not as reproducible across seeds as fp32 (module docstring)
    use_amp = supported and amp is True
    # oneDNN's NHWC convolutions are faster than NCHW on vectorised x86 CPUs
    use_cl = channels_last is True or (channels_last == "auto" and capability in VECTOR_CPUS)
    reason = (
        f"CPU capability {capability}, native bf16 {'yes' if supported else 'no'}; "
        f"asked amp={amp}, channels_last={channels_last}"
    )
    return Precision(torch.bfloat16 if use_amp else None, use_cl, reason, "cpu")
