"""What a workload hands the worker: a module, its inputs and what to expect of them.

A workload knows nothing about backends. Backends get `forward(module, *inputs)` and
decide how to run it (eagerly, through torch.compile, or traced into JAX).

The contract, as a Protocol: a workload package registers a schema (harness/orchestrator/plugins.py) whose
`build` target satisfies `BuildWorkload`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from harness.errors import ConfigError

Outputs = tuple[torch.Tensor, ...]


@dataclass
class Generation:
    """A greedy generation (harness/worker/generate.py runs and times it). The workload's `forward` is
    the prefill of `inputs` (the prompt); `steps["decode"]` the decode step. Both return
    (next_token, next_position, logits, *carry), the argmax inside the step so that the token
    stays on the device; decode takes (token, position, *carry) and its outputs feed the next."""
    new_tokens: int             # tokens per sequence: the prefill's, then new_tokens - 1 decode steps
    check_tokens: int           # greedy tokens compared with eager's (numerics)
    # The carry grows every step (a cache without preallocation): each position is a new shape,
    # and a compile per length is the compiler's behaviour there, not a defect.
    growing: bool = False


@dataclass
class Workload:
    name: str
    params: dict[str, Any]                  # resolved: preset merged with explicit overrides
    module: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]        # positional inputs of forward
    forward: Callable[..., Any]             # forward(module, *inputs) -> Tensor | tuple of Tensors
    flops: float                            # per iteration, in the configured mode
    min_bytes: float                        # fewest bytes one iteration must move
    reference: Callable[[], list[Outputs]]  # float32 ground truth, one Outputs per check step
    min_sqnr_db: float                      # numerics pass threshold, per output tensor
    mode: str = "fwd"                       # fwd | fwd_bwd
    grad_outputs: tuple[torch.Tensor, ...] | None = None  # cotangents of forward's outputs (fwd_bwd)
    tokens_per_iter: int | None = None
    # Module buffers that forward updates in place (a KV cache), by name as in
    # `module.named_buffers()`: gpt-fast's idiom, which lets CUDA graphs replay (the buffers'
    # addresses never change). Torch backends mutate them as eager does; XLA, whose jit drops
    # in-place writes to module state, passes them in, returns and donates them.
    state_buffers: tuple[str, ...] = ()
    # The state after the check steps, float32 on the CPU, per buffer name: the numerics check
    # compares each backend's final state with it (a lost cache write shows here directly).
    reference_state: Callable[[], dict[str, torch.Tensor]] | None = None
    # A backend's state buffers (by name) -> the entries the check steps wrote, float32 on the CPU.
    state_probe: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    # The numerics check runs these input tuples in order (decode: several steps, so a cache
    # that is not carried over shows up). Defaults to one call on `inputs`.
    check_inputs: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    output_names: tuple[str, ...] = ()
    # Named forwards beside `forward`, over the same module and state buffers, each
    # `step(module, *inputs)`: backends prepare each as a callable sharing the state (a KV cache).
    steps: dict[str, Callable[..., Any]] = field(default_factory=dict)
    generation: Generation | None = None
    # What the console line and the record say was measured: "M=64 K=128 N=256"; default: the
    # inputs' dtypes and shapes.
    shape: str = ""
    # Why this program's time on this device is not the hardware's (an op that runs as an
    # emulation here); "" when it is. The run is flagged `emulated` with this as the detail.
    emulated: str = ""

    def __post_init__(self) -> None:
        if not self.check_inputs:
            self.check_inputs = [self.inputs]
        if not self.shape:
            self.shape = ", ".join(f"{str(t.dtype).removeprefix('torch.')}[{','.join(map(str, t.shape))}]"
                                   for t in self.inputs if isinstance(t, torch.Tensor))

    def grad_targets(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """What fwd_bwd differentiates: inputs that require grad, then parameters, in order."""
        return [t for t in inputs if t.requires_grad] + [
            p for p in self.module.parameters() if p.requires_grad]


class LazyMapping(Mapping):
    """keys -> get(key), computed when asked for: state buffers are handed over one at a time
    (a Qwen3-0.6B KV cache is 3.6 GB; copying it whole to the host for a check is not needed)."""

    def __init__(self, keys: Sequence[str], get: Callable[[str], torch.Tensor]):
        self._keys, self._get = tuple(keys), get

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._get(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class BuildWorkload(Protocol):
    def __call__(self, cfg: dict[str, Any], device: torch.device) -> Workload: ...


def as_outputs(out: Any) -> Outputs:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def run_torch(workload: Workload, forward: Callable[..., Any], inputs: Sequence[torch.Tensor]) -> Outputs:
    """One iteration in torch: forward, plus gradients in fwd_bwd mode (autograd.grad does not
    accumulate into .grad, so repeated calls do no extra work)."""
    if workload.mode == "fwd":
        with torch.no_grad():
            return as_outputs(forward(workload.module, *inputs))
    outs = as_outputs(forward(workload.module, *inputs))
    grads = torch.autograd.grad(outs, workload.grad_targets(inputs), grad_outputs=workload.grad_outputs)
    return tuple(o.detach() for o in outs) + tuple(grads)


def torch_dtype(name: str, key: str = "workload.dtype") -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(key, f"expected a torch dtype name such as bfloat16, got {name!r}")
    return dtype


def fp8_supported(device: torch.device) -> bool:
    """`torch._scaled_mm` runs on the CPU and on CUDA devices of compute capability >= 8.9."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 9)
    return False
