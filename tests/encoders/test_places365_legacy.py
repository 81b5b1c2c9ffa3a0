"""The released Places365 checkpoints: legacy torch files pickled by Python 2.

The replica below is written byte by byte the way Python 2.7 + PyTorch 0.2 wrote
``resnet18_places365.pth.tar`` (``torch/serialization.py`` ``_save`` of that release), not
the way today's torch would write it:

- five pickles, protocol 2: the magic number, the protocol version 1001, ``sys_info``, the
  checkpoint, the sorted storage keys; then each storage's raw bytes after an int64 count;
- storages as persistent ids ``('storage', torch.FloatStorage, key, 'cuda:0', numel, None)``,
  tensors as ``torch._utils._rebuild_tensor(storage, offset, size, stride)``, the state dict
  as Python 2's ``OrderedDict.__reduce__`` (a list of ``[key, value]`` pairs, no ``_metadata``
  and no ``num_batches_tracked``, which torch 0.4.1 added);
- every Python 2 ``str`` as SHORT_BINSTRING / BINSTRING (raw bytes, no encoding), including
  the 8 raw bytes of the numpy scalar ``best_prec1``: 53.02 is ``c3 f5 28 ...``, the byte
  0xc3 that Python 3 users hit (CSAILVision/places365 issues 25 and 33).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import torchvision

from modfuse.encoders.timm import TimmEncoder
from modfuse.io import extract_state_dict, load_tensors, numpy_scalar_globals

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
BEST_PREC1 = 53.02  # little-endian float64 bytes: c3 f5 28 5c 8f 82 4a 40


class Py2Str(bytes):
    """A Python 2 ``str``: raw bytes, pickled as SHORT_BINSTRING or BINSTRING."""


@dataclass(eq=False)
class Global:
    """A class or function, pickled as ``GLOBAL module\\nname\\n``."""

    module: str
    name: str


@dataclass(eq=False)
class Reduce:
    """``func(*args)``, then ``BUILD`` with ``state`` when there is one."""

    func: Global
    args: tuple
    state: Any = None


@dataclass(eq=False)
class Storage:
    """A float32 storage, pickled as a persistent id; its bytes follow the pickles."""

    key: str
    data: torch.Tensor  # contiguous float32, 1-D


class Py2Pickler(pickle._Pickler):
    """Protocol 2 with Python 2.7's ``save_string``, ``save_global`` and ``save_reduce``.

    ints, floats, None, bools, tuples, lists and dicts pickle identically in Python 2.7 and 3
    for the values used here (ints below 2**31, the magic number as LONG1).
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2, fix_imports=False)
        # torch 0.2's normalize_storage_type: torch.FloatStorage even for a CUDA storage.
        self.float_storage = Global("torch", "FloatStorage")

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, Storage):
            return None
        key = Py2Str(obj.key.encode())
        location = Py2Str(b"cuda:0")  # trained on GPUs: the README loads with map_location
        return (STORAGE, self.float_storage, key, location, len(obj.data), None)

    def save_py2_str(self, obj: Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + bytes(obj))
        self.memoize(obj)

    def save_global_ref(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_reduce_call(self, obj: Reduce) -> None:
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.memoize(obj)
        if obj.state is not None:
            self.save(obj.state)
            self.write(pickle.BUILD)

    dispatch[Py2Str] = save_py2_str
    dispatch[Global] = save_global_ref
    dispatch[Reduce] = save_reduce_call


STORAGE = Py2Str(b"storage")  # one interned Python 2 str, memoized after its first use


def py2_dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf).dump(obj)
    return buf.getvalue()


def py2_numpy_float64(value: float) -> Reduce:
    """A numpy 1.x ``float64`` as Python 2 pickled it: ``scalar(dtype('f8'), raw_bytes)``."""
    f8 = Reduce(
        Global("numpy", "dtype"),
        (Py2Str(b"f8"), 0, 1),
        (3, Py2Str(b"<"), None, None, None, -1, -1, 0),
    )
    return Reduce(Global("numpy.core.multiarray", "scalar"), (f8, Py2Str(struct.pack("<d", value))))


def write_py2_torch02_checkpoint(
    path: Path, state_dict: dict[str, torch.Tensor], extra: dict[str, Any] | None = None
) -> None:
    """Write ``{'epoch', 'arch', 'state_dict', 'best_prec1'}`` as Python 2 + PyTorch 0.2 did."""
    rebuild_tensor = Global("torch._utils", "_rebuild_tensor")  # one object: memoized
    # Keys are str(storage._cdata), C pointers: their sorted order is not the model's.
    addresses = random.Random(0).sample(range(94_000_000_000_000, 94_000_100_000_000, 64), 999)
    storages: list[Storage] = []
    items = []
    for address, (name, tensor) in zip(addresses, state_dict.items()):
        storage = Storage(str(address), tensor.reshape(-1))
        storages.append(storage)
        size = tuple(tensor.shape)
        stride = tuple(tensor.stride())
        items.append([Py2Str(name.encode()), Reduce(rebuild_tensor, (storage, 0, size, stride))])
    checkpoint = {
        Py2Str(b"epoch"): 90,
        Py2Str(b"arch"): Py2Str(b"resnet18"),
        Py2Str(b"state_dict"): Reduce(Global("collections", "OrderedDict"), (items,)),
        Py2Str(b"best_prec1"): py2_numpy_float64(BEST_PREC1),
    }
    checkpoint.update({Py2Str(k.encode()): v for k, v in (extra or {}).items()})
    sys_info = {
        Py2Str(b"protocol_version"): PROTOCOL_VERSION,
        Py2Str(b"little_endian"): True,
        Py2Str(b"type_sizes"): {Py2Str(b"short"): 2, Py2Str(b"int"): 4, Py2Str(b"long"): 8},
    }
    by_key = {s.key: s for s in storages}
    keys = sorted(by_key)
    out = io.BytesIO()
    out.write(py2_dumps(MAGIC_NUMBER))
    out.write(py2_dumps(PROTOCOL_VERSION))
    out.write(py2_dumps(sys_info))
    out.write(py2_dumps(checkpoint))
    out.write(py2_dumps([Py2Str(k.encode()) for k in keys]))
    for key in keys:  # THFloatStorage_writeFileRaw: int64 element count, then the elements
        data = by_key[key].data.contiguous()
        out.write(struct.pack("<q", data.numel()))
        out.write(data.numpy().astype("<f4").tobytes())
    path.write_bytes(out.getvalue())


def reference_backbone(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's resnet18 without classifier, the weights loaded directly (torch fills in the
    ``num_batches_tracked`` a state dict without ``_metadata`` lacks)."""
    ref = timm.create_model("resnet18", pretrained=False, num_classes=0)
    ref.load_state_dict({k: v for k, v in weights.items() if not k.startswith("fc.")})
    return ref.eval()


def places365_resnet18_weights() -> dict[str, torch.Tensor]:
    """A resnet18 with a 365-way fc and BatchNorm statistics worth checking, torch-0.2 keys."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=365)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return {
        k: v.detach().clone()
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")  # torch 0.2 had no such buffer
    }


def scene_image() -> torch.Tensor:
    """A smooth two-image batch of gradients and shapes, pixels in [0, 1]: (2, 3, 96, 96)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    sky = torch.stack([0.3 + 0.4 * (1 - yy), 0.5 + 0.3 * (1 - yy), 0.9 - 0.2 * yy])
    disk = ((xx - 0.3) ** 2 + (yy - 0.35) ** 2 < 0.02).float()
    house = ((xx > 0.55) & (xx < 0.85) & (yy > 0.5) & (yy < 0.9)).float()
    img = sky * (1 - disk) + torch.tensor([1.0, 0.9, 0.2])[:, None, None] * disk
    img = img * (1 - house) + torch.tensor([0.6, 0.25, 0.2])[:, None, None] * house
    return torch.stack([img, img.flip(-1) * 0.8 + 0.1]).clamp(0, 1)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return places365_resnet18_weights()


@pytest.fixture
def replica(tmp_path, weights) -> Path:
    path = tmp_path / "resnet18_places365.pth.tar"
    write_py2_torch02_checkpoint(path, {f"module.{k}": v for k, v in weights.items()})
    return path


def pickles_in(path: Path) -> list[list[tuple[str, Any]]]:
    """The (opcode, argument) lists of the legacy file's five pickles."""
    f = io.BytesIO(path.read_bytes())
    found = []
    for _ in range(5):
        found.append([(op.name, arg) for op, arg, _ in pickletools.genops(f)])
    return found


def test_replica_is_a_python2_legacy_file(replica):
    magic, version, sys_info, checkpoint, keys = pickles_in(replica)
    assert ("LONG1", MAGIC_NUMBER) in magic and ("BININT2", PROTOCOL_VERSION) in version
    opcodes = {name for p in (sys_info, checkpoint, keys) for name, _ in p}
    assert "SHORT_BINSTRING" in opcodes and "BINPERSID" in opcodes
    assert not opcodes & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    globals_ = {arg for name, arg in checkpoint if name == "GLOBAL"}
    assert globals_ == {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor",
        "torch FloatStorage",
        "numpy dtype",
        "numpy.core.multiarray scalar",
    }
    raw = struct.pack("<d", BEST_PREC1)
    assert raw[0] == 0xC3 and ("SHORT_BINSTRING", raw.decode("latin1")) in checkpoint


def test_replica_reproduces_the_reported_error(replica):
    # What Python 3 users of the released file saw, loading as the Places365 README does, with
    # torch's default encoding then (pickle's ASCII) and now (UTF-8).
    with pytest.raises(UnicodeDecodeError, match="'ascii' codec can't decode byte 0xc3"):
        torch.load(replica, map_location="cpu", weights_only=False, encoding="ascii")
    with pytest.raises(UnicodeDecodeError, match="'utf-8' codec can't decode byte 0xc3"):
        torch.load(replica, map_location="cpu", weights_only=False)
    # Today's safe default first refuses the numpy scalar; allowed, it hits the same byte.
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL numpy.core.multiarray.scalar"):
        torch.load(replica, map_location="cpu", weights_only=True)
    with torch.serialization.safe_globals(numpy_scalar_globals()):
        with pytest.raises(UnicodeDecodeError, match="'utf-8' codec can't decode byte 0xc3"):
            torch.load(replica, map_location="cpu", weights_only=True)


def test_replica_loads_bit_identical_with_its_metadata(replica, weights):
    ckpt = load_tensors(replica)
    assert ckpt["epoch"] == 90 and ckpt["arch"] == "resnet18"
    assert isinstance(ckpt["best_prec1"], np.float64) and ckpt["best_prec1"] == BEST_PREC1
    state = extract_state_dict(ckpt)
    assert list(state) == list(weights)
    assert state["fc.weight"].shape == (365, 512) and state["fc.bias"].shape == (365,)
    for k, v in weights.items():
        assert state[k].dtype == torch.float32 and torch.equal(state[k], v), k


def test_timm_encoder_on_the_replica_matches_timm_loaded_directly(replica, weights):
    enc = TimmEncoder("resnet18", weights=replica, freeze=True)
    x = scene_image()
    with torch.no_grad():
        got, want = enc.model(x), reference_backbone(weights)(x)
    assert enc.out_dim == 512 and got.shape == (2, 512)
    assert want.abs().mean() > 0.1  # a real signal, not a vanishing one
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_numpy_bytes_that_happen_to_be_valid_utf8_keep_their_value(tmp_path, weights):
    # These bytes decode as UTF-8 without error (to 5 characters, not 8), so reading with
    # UTF-8 first and latin1 only on a UnicodeDecodeError would hand numpy the wrong bytes.
    raw = bytes.fromhex("c3a9c3a9c3a94a40")
    assert len(raw.decode("utf-8")) == 5
    value = struct.unpack("<d", raw)[0]
    path = tmp_path / "utf8_bytes.pth.tar"
    extra = {"best_prec5": py2_numpy_float64(value)}
    write_py2_torch02_checkpoint(path, {"w": weights["fc.bias"]}, extra)
    with pytest.raises(Exception) as utf8_first:
        torch.load(path, map_location="cpu", weights_only=True)
    assert not isinstance(utf8_first.value, UnicodeDecodeError)
    assert load_tensors(path)["best_prec5"] == value


def test_python2_string_of_256_bytes_or_more_is_a_clear_error(tmp_path, weights):
    path = tmp_path / "long_note.pth.tar"
    note = Py2Str("trained on Places365-Standard, 10 crops, caf\u00e9 ".encode() * 8)
    write_py2_torch02_checkpoint(path, {"w": weights["fc.bias"]}, {"note": note})
    assert len(note) >= 256
    with pytest.raises(ValueError, match="Python 2 string of 256 bytes or more .*BINSTRING"):
        load_tensors(path)


def shell_payload(marker: Path) -> Reduce:
    return Reduce(Global("posix", "system"), (Py2Str(f"touch {marker}".encode()),))


def eval_payload(marker: Path) -> Reduce:
    code = f"open({str(marker)!r}, 'w').close()"
    return Reduce(Global("__builtin__", "eval"), (Py2Str(code.encode()),))


@pytest.mark.parametrize("payload", [shell_payload, eval_payload], ids=["os.system", "eval"])
def test_malicious_legacy_replica_is_refused_and_runs_nothing(
    tmp_path, weights, payload: Callable[[Path], Reduce]
):
    marker = tmp_path / "pwned"
    path = tmp_path / "resnet18_places365.pth.tar"
    state = {f"module.{k}": v for k, v in weights.items()}
    write_py2_torch02_checkpoint(path, state, {"best_prec1": payload(marker)})
    with pytest.raises(ValueError, match=r"refusing to load .*resnet18_places365\.pth\.tar"):
        load_tensors(path)
    with pytest.raises(ValueError, match="refusing to load"):
        TimmEncoder("resnet18", weights=path)
    assert not marker.exists()
    # The payload is live: an unsafe reader runs it.
    torch.load(path, map_location="cpu", weights_only=False, encoding="latin1")
    assert marker.exists()


class ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class ExecPayload(ShellPayload):
    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [ShellPayload, ExecPayload], ids=["os.system", "exec"])
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_malicious_modern_file_is_refused_and_runs_nothing(tmp_path, weights, payload, zipfile):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    ckpt = {"state_dict": dict(weights), "best_prec1": payload(marker)}
    torch.save(ckpt, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(ValueError, match=r"refusing to load .*model\.pth"):
        load_tensors(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live
    assert marker.exists()


@pytest.mark.parametrize("zipfile", [False, True], ids=["legacy", "zip"])
def test_files_written_by_modern_torch_load(tmp_path, weights, zipfile):
    path = tmp_path / "resnet18_places365.pth.tar"
    # Written since torch 0.4.1, a state dict has BatchNorm's num_batches_tracked.
    state = dict(weights)
    for k in weights:
        if k.endswith("running_mean"):
            state[k.replace("running_mean", "num_batches_tracked")] = torch.tensor(7)
    ckpt = {"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    ckpt["best_prec1"] = np.float64(BEST_PREC1)  # numpy 2 names it numpy._core.multiarray
    torch.save(ckpt, path, _use_new_zipfile_serialization=zipfile)
    loaded = load_tensors(path)
    assert loaded["best_prec1"] == BEST_PREC1
    assert list(extract_state_dict(loaded)) == list(state)
    assert all(torch.equal(extract_state_dict(loaded)[k], v) for k, v in state.items())
    enc = TimmEncoder("resnet18", weights=path).eval()
    x = scene_image()
    with torch.no_grad():
        got, want = enc.model(x), reference_backbone(weights)(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:pickle_load_args only works")
def test_numpy_allow_list_does_not_outlive_the_call(replica):
    before = set(torch.serialization.get_safe_globals())
    load_tensors(replica)
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(replica, map_location="cpu", weights_only=True, encoding="latin1")
