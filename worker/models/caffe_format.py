"""Caffe per-layer weight files: raw little-endian float32, one `<caffe layer>_{filter,bias}.bin` each.

The format of the caffejs exports in ../shared/models/bvlc_googlenet and squeezenet1_1 (their
READMEs): conv filters are stored (out, kh, kw, in), a fully connected classifier (out, in) as
nn.Linear, biases (out,); no header; a `/` in a Caffe layer name is a folder. A SHA256SUMS beside
the files, when present, pins every one of them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from worker.models._api import DEFAULT, WeightsArg, WeightsError

CaffeParams = Sequence[tuple[str, nn.Conv2d | nn.Linear]]  # (Caffe layer name, module), network order


def weights_dir(path: str | os.PathLike[str], model: str) -> Path:
    """The folder holding the per-layer files: `path` itself or its weights/ subfolder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"{model} weights folder not found: {folder}")
    if (folder / "weights").is_dir() and not (folder / "conv1").is_dir():
        folder = folder / "weights"
    return folder


def _expected_files(params: CaffeParams) -> dict[str, tuple[nn.Parameter, tuple[int, ...]]]:
    """{relative file path: (parameter, stored shape)} of every file the model reads."""
    files = {}
    for caffe, module in params:
        weight = module.weight
        if weight.dim() == 4:  # stored (out, kh, kw, in)
            out_c, in_c, kh, kw = weight.shape
            stored: tuple[int, ...] = (out_c, kh, kw, in_c)
        else:
            stored = tuple(weight.shape)
        files[f"{caffe}_filter.bin"] = (weight, stored)
        files[f"{caffe}_bias.bin"] = (module.bias, tuple(module.bias.shape))
    return files


def _read_sha256sums(folder: Path) -> dict[str, str] | None:
    """{path relative to the weights folder: sha256} from a SHA256SUMS beside it, if any."""
    for sums, prefix in ((folder / "SHA256SUMS", ""), (folder.parent / "SHA256SUMS", f"{folder.name}/")):
        if sums.is_file():
            table = {}
            for line in sums.read_text("utf-8").splitlines():
                if line.strip():
                    digest, name = line.split(maxsplit=1)
                    name = name.lstrip("*")  # binary-mode marker of sha256sum
                    if name.startswith(prefix):
                        table[name[len(prefix) :]] = digest.lower()
            return table
    return None


def weights_sha256(folder: Path, files: Sequence[str]) -> str:
    """weights_sha256 of a Caffe folder.

    Defined as the sha256 of the concatenated bytes of every weight file the model reads (116
    files for BVLC GoogLeNet, 52 for SqueezeNet: `<caffe layer>_filter.bin` and `_bias.bin`), taken
    in sorted order of their paths
    relative to the weights/ folder ('/'-separated, Python string order); no names or separators
    are hashed. Equal digests mean the network computes with byte-identical parameters.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def caffe_weights(model: str, params: CaffeParams, weights: WeightsArg, wnids: Sequence[str]) -> tuple[str, str]:
    """A Caffe model's `weights` argument: fill `params` from a folder (None: keep the init), refuse
    DEFAULT (a Caffe model has nothing to download). Returns (source, sha256) for LoadedModel."""
    if weights is DEFAULT:
        raise WeightsError(
            f"{model} has no downloadable default weights: pass the folder of per-layer "
            f"float32 files (e.g. --weights path/to/{model.replace('-', '_')})"
        )
    if weights is None:
        return "random init (no weights)", "none"
    folder, sha = load_caffe_weights(model, params, weights)
    check_synsets(folder, wnids)
    return str(folder.resolve()), sha


def load_caffe_weights(model: str, params: CaffeParams, path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Fill `params` from a weight folder; check sizes and SHA256SUMS. Returns (folder, sha256).

    Every file is read and checked before any parameter is written, so a bad folder leaves the
    network as it was.
    """
    folder = weights_dir(path, model)
    expected = _expected_files(params)
    sums = _read_sha256sums(folder)
    blobs = {}
    for name, (_, stored) in expected.items():
        file = folder / name
        if not file.is_file():
            raise WeightsError(f"missing weight file {file} (expected {stored} float32 values)")
        blob = file.read_bytes()
        n_bytes = 4 * int(np.prod(stored))
        if len(blob) != n_bytes:
            raise WeightsError(
                f"weight file {file} has {len(blob)} bytes, expected {n_bytes} "
                f"(float32 {stored}); it is truncated or not this layer's file"
            )
        if sums is not None:
            if name not in sums:
                raise WeightsError(f"weight file {file} is not listed in {folder}'s SHA256SUMS")
            if hashlib.sha256(blob).hexdigest() != sums[name]:
                raise WeightsError(f"weight file {file} does not match its SHA256SUMS entry")
        blobs[name] = blob
    with torch.no_grad():
        for name, (param, stored) in expected.items():
            values = torch.from_numpy(np.frombuffer(blobs[name], dtype="<f4").reshape(stored).copy())
            if len(stored) == 4:
                values = values.permute(0, 3, 1, 2)  # (out, kh, kw, in) -> (out, in, kh, kw)
            param.copy_(values)
    return folder, weights_sha256(folder, list(expected))


def check_synsets(folder: Path, wnids: Sequence[str]) -> None:
    """Refuse a weight folder whose synset_words.txt orders the classes differently."""
    for candidate in (folder / "synset_words.txt", folder.parent / "synset_words.txt"):
        if candidate.is_file():
            theirs = [line.split(" ", 1)[0] for line in candidate.read_text("utf-8").splitlines() if line.strip()]
            if theirs != list(wnids):
                raise WeightsError(f"{candidate} lists the classes in a different order than ImageNet-1k")
            return
