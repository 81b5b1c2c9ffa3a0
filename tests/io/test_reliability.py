"""Files under faults: edited headers, hostile pickles, full disks, odd config.json files and
the user's umask (issue 21, items 8, 9, 10, 12 and 14). New names are imported inside the
tests, so that each fails on its own against code without them."""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from modfuse import FusionModel
from modfuse.io import atomic_write_json, load_tensors, save_tensors
from modfuse.training import TrainState
from tests.encoders import test_places365_legacy as legacy
from tests.encoders.test_places365_legacy import Global, Py2Str, Reduce


def small_model() -> FusionModel:
    torch.manual_seed(0)
    return FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)


def retype_in_header(path: Path, name: str, dtype: str) -> None:
    """Change tensor ``name``'s dtype in a safetensors header, leaving its bytes as they are."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header[name]["dtype"] = dtype
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > n:
        raise ValueError(f"the edited header is {len(text)} bytes, the file has room for {n}")
    path.write_bytes(raw[:8] + text + b" " * (n - len(text)) + raw[8 + n :])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- item 8: dtypes in the header
def test_a_weight_relabelled_int32_in_the_header_is_refused_by_load(tmp_path):
    model, weights = small_model(), tmp_path / "m" / "model.safetensors"
    model.save(tmp_path / "m")
    name = next(k for k, v in model.state_dict().items() if v.dtype == torch.float32)
    retype_in_header(weights, name, "I32")
    # The edit is live: the float32 bits now read as int32, which load_state_dict would convert.
    edited = load_tensors(weights)[name]
    assert edited.dtype == torch.int32
    assert torch.equal(edited.view(torch.float32), model.state_dict()[name])
    with pytest.raises(
        ValueError, match=rf"'{name}' is torch\.int32 in the file, torch\.float32 expected"
    ) as err:
        FusionModel.load(tmp_path / "m")
    assert str(weights) in str(err.value)


def test_a_resumed_checkpoint_with_a_relabelled_weight_is_refused(tmp_path):
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    TrainState(model, opt).save(tmp_path / "epoch-0000", {"epoch": 0})
    name = next(k for k, v in model.state_dict().items() if v.dtype == torch.float32)
    retype_in_header(tmp_path / "epoch-0000" / "model.safetensors", name, "I32")
    copy = small_model()
    before = {k: v.clone() for k, v in copy.state_dict().items()}
    with pytest.raises(
        ValueError, match=rf"cannot resume .*'{name}' is torch\.int32 in the file, torch\.float32"
    ):
        TrainState(copy, torch.optim.SGD(copy.parameters(), lr=0.1)).load(tmp_path / "epoch-0000")
    assert all(torch.equal(v, before[k]) for k, v in copy.state_dict().items())


def test_check_state_fits_names_each_dtype_that_differs(tmp_path):
    from modfuse.io.tensor_files import check_state_fits, saved_dtypes, saved_shapes

    path = tmp_path / "w.safetensors"
    save_tensors(path, {"w": torch.ones(2), "b": torch.zeros(2), "n": torch.tensor(3)})
    retype_in_header(path, "b", "I32")
    assert saved_dtypes(path) == {"w": torch.float32, "b": torch.int32, "n": torch.int64}
    expected = {"w": torch.float32, "b": torch.float32, "n": torch.int64}
    with pytest.raises(ValueError) as err:
        check_state_fits(
            {"w": (2,), "b": (2,), "n": ()},
            saved_shapes(path),
            "w.safetensors does not fit",
            expected_dtypes=expected,
            saved_dtypes=saved_dtypes(path),
        )
    assert str(err.value) == (
        "w.safetensors does not fit: 'b' is torch.int32 in the file, torch.float32 expected"
    )


# ------------------------------------------------- item 9: numpy in legacy pickles, no further
def numpy_dtype(code: object, state: object = None) -> Reduce:
    """``numpy.dtype(code, 0, 1)`` as Python 2 pickled it, then ``BUILD`` with ``state``."""
    return Reduce(Global("numpy", "dtype"), (code, 0, 1), state)


def plain_state(order: bytes = b"<") -> tuple:
    return (3, Py2Str(order), None, None, None, -1, -1, 0)


def scalar(dtype: Reduce, raw: bytes) -> Reduce:
    return Reduce(Global("numpy.core.multiarray", "scalar"), (dtype, Py2Str(raw)))


POINTER_FLAGS = (3, Py2Str(b"<"), None, None, None, -1, -1, 4)  # NPY_ITEM_IS_POINTER
X = Py2Str(b"x")  # a field holding a float64 at offset 0, with refcount + pointer flags
FIELDS = (3, Py2Str(b"<"), None, (X,), {X: (numpy_dtype(Py2Str(b"f8"), plain_state()), 0)}, 8, 1, 5)
GADGETS = {
    "datetime dtype": (numpy_dtype(Py2Str(b"M8")), r"numpy\.dtype\('M8'\)"),
    "object dtype": (numpy_dtype(Py2Str(b"O8")), r"numpy\.dtype\('O8'\)"),
    "structured dtype": (
        numpy_dtype([(Py2Str(b"a"), Py2Str(b"<f8"))]),
        r"numpy\.dtype\(\[\('a', '<f8'\)\]\)",
    ),
    "pointer flags on float64": (
        scalar(numpy_dtype(Py2Str(b"f8"), POINTER_FLAGS), struct.pack("<d", 1.5)),
        r"BUILD with fields, item size or flags",
    ),
    "object field on float64": (
        scalar(numpy_dtype(Py2Str(b"f8"), FIELDS), struct.pack("<d", 1.5)),
        r"BUILD with fields, item size or flags",
    ),
    "BUILD on the Float64DType class": (
        Reduce(Global("numpy.dtypes", "Float64DType"), (), POINTER_FLAGS),
        r"GLOBAL numpy\.dtypes\.Float64DType was not an allowed global",
    ),
    "scalar of 4 bytes as float64": (
        scalar(numpy_dtype(Py2Str(b"f8"), plain_state()), b"\x00\x00\xc0\x3f"),
        r"numpy <f8 scalar from .*expected 8 raw bytes",
    ),
}


@pytest.mark.parametrize("gadget", list(GADGETS))
def test_numpy_gadgets_in_a_legacy_file_are_refused_naming_the_file(tmp_path, gadget):
    value, reason = GADGETS[gadget]
    path = tmp_path / "resnet18_places365.pth.tar"
    legacy.write_py2_torch02_checkpoint(path, {"w": torch.ones(2)}, {"best_prec1": value})
    with pytest.raises(ValueError, match=rf"refusing to load {path}: .*{reason}"):
        load_tensors(path)


def test_the_heap_address_gadget_is_live_without_the_check(tmp_path):
    # What numpy's own dtype.__setstate__ makes of POINTER_FLAGS: the 8 bytes of 1.5 are
    # read as a pointer, and the scalar is an address, not 1.5 (the file holds no code).
    real = np.dtype("f8", copy=True)  # a copy: never the process's float64 itself
    real.__setstate__((3, "<", None, None, None, -1, -1, 4))
    numpy_scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar, in numpy 1 and 2
    got = numpy_scalar(real, struct.pack("<d", 1.5))
    assert got != 1.5


def test_plain_numpy_scalars_of_a_python2_file_still_load(tmp_path):
    extra = {
        "best_prec5": scalar(numpy_dtype(Py2Str(b"f8"), plain_state()), struct.pack("<d", 81.5)),
        "lr": scalar(numpy_dtype(Py2Str(b"f4"), plain_state()), struct.pack("<f", 0.25)),
        "step": scalar(numpy_dtype(Py2Str(b"i8"), plain_state()), struct.pack("<q", -7)),
        "big": scalar(numpy_dtype(Py2Str(b"f8"), plain_state(b">")), struct.pack(">d", 2.5)),
        "done": scalar(numpy_dtype(Py2Str(b"b1"), plain_state(b"|")), b"\x01"),
    }
    path = tmp_path / "resnet18_places365.pth.tar"
    legacy.write_py2_torch02_checkpoint(path, {"w": torch.ones(2)}, extra)
    got = load_tensors(path)
    assert (type(got["best_prec1"]), got["best_prec1"]) == (np.float64, 53.02)
    assert (type(got["best_prec5"]), got["best_prec5"]) == (np.float64, 81.5)
    assert (type(got["lr"]), got["lr"]) == (np.float32, np.float32(0.25))
    assert (type(got["step"]), got["step"]) == (np.int64, -7)
    assert (type(got["big"]), got["big"]) == (np.float64, 2.5)
    assert (type(got["done"]), bool(got["done"])) == (np.bool_, True)
    assert torch.equal(got["state_dict"]["w"], torch.ones(2))


# --------------------------------------------------------------- item 10: the disk fills up
def disk_full_after(n: int, monkeypatch) -> None:
    """Let os.write put ``n`` more bytes on disk, then fail as a full disk does."""
    real = os.write

    def write(fd: int, data) -> int:
        nonlocal n
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done = real(fd, bytes(data)[:n])
        n -= done
        return done

    monkeypatch.setattr(os, "write", write)


def test_json_on_a_full_disk_is_one_paragraph_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"old": True})
    disk_full_after(5, monkeypatch)
    with pytest.raises(OSError) as err:
        atomic_write_json(path, {"new": list(range(100))})
    assert type(err.value).__name__ == "FileWriteError" and err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"cannot write {path}: the disk is full")
    assert "\n" not in str(err.value)
    assert json.loads(path.read_text()) == {"old": True} and leftovers(tmp_path) == []


def test_a_model_saved_on_a_full_disk_leaves_no_weights_file(tmp_path, monkeypatch):
    import modfuse.io.tensor_files as tensor_files

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x08\x00\x00")  # what got out before the disk filled
        raise SafetensorError(
            f"Error while serializing: I/O error: No space left on device (os error 28) at "
            f'path "{filename}"'
        )

    monkeypatch.setattr(tensor_files, "save_file", full)
    with pytest.raises(OSError) as err:
        small_model().save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    assert type(err.value).__name__ == "FileWriteError" and err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"cannot write {weights}: the disk is full")
    assert os.listdir(tmp_path / "m") == []


def test_a_checkpoint_whose_state_json_hits_a_full_disk_says_so(tmp_path, monkeypatch):
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    disk_full_after(0, monkeypatch)  # safetensors writes through Rust; os.write is the JSON's
    with pytest.raises(OSError, match=r"cannot write .*state\.json: the disk is full"):
        TrainState(model, opt).save(tmp_path / "epoch-0000", {"epoch": 0})
    assert not (tmp_path / "epoch-0000" / "state.json").exists()
    assert leftovers(tmp_path / "epoch-0000") == []


def test_writes_cut_short_by_the_os_name_the_file_and_leave_nothing(tmp_path):
    # A real failed write, no mock: a file size limit (RLIMIT_FSIZE) makes the kernel refuse
    # bytes past 64 KiB with EFBIG, in Python's os.write and in safetensors' Rust alike.
    resource = pytest.importorskip("resource")
    signal = pytest.importorskip("signal")
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
    errors = []
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, old_limit[1]))
        for write in (
            lambda: atomic_write_json(tmp_path / "big.json", list(range(30_000))),
            lambda: save_tensors(tmp_path / "big.safetensors", {"w": torch.ones(40_000)}),
        ):
            with pytest.raises(OSError) as err:
                write()
            errors.append(err.value)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    for err, name in zip(errors, ["big.json", "big.safetensors"]):
        assert type(err).__name__ == "FileWriteError" and err.errno == errno.EFBIG
        assert str(err).startswith(f"cannot write {tmp_path / name}: the write failed (File")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ item 12: odd config.json files
def test_a_config_json_nested_100000_deep_is_a_clear_error(tmp_path):
    small_model().save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    config.write_text('{"format": "modfuse.FusionModel", "version": 1, "model": ' + "[" * 100_000)
    with pytest.raises(ValueError, match=rf"{config} is not a modfuse file: its JSON nests deeper"):
        FusionModel.load(tmp_path / "m")


def test_a_config_json_of_a_newer_version_is_refused(tmp_path):
    small_model().save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "version": 99}))
    with pytest.raises(
        ValueError,
        match=rf"{config} has config version 99, newer than this modfuse supports \(versions "
        r"up to 1\)",
    ):
        FusionModel.load(tmp_path / "m")


# --------------------------------------------------------------- item 14: the user's umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        save_tensors(tmp_path / "t.safetensors", {"w": torch.ones(2)})
        small_model().save(tmp_path / "m")
    finally:
        os.umask(old)
    files = ["a.json", "t.safetensors", "m/config.json", "m/model.safetensors"]
    modes = {f: stat.S_IMODE((tmp_path / f).stat().st_mode) for f in files}
    assert modes == dict.fromkeys(files, mode)
