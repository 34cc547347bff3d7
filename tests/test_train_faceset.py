"""Faceset format: writing, resuming, loading, and the refusals of bad facesets (real packaged faces)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime_swap.train.faceset import Faceset, FacesetError, FacesetWriter, ImageFormat
from realtime_swap.train.sample_faces import jittered_crops, write_packaged_faceset
from realtime_swap.types import FaceType

RES = 64


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return jittered_crops("astronaut", 4, RES, seed=3)


def _landmarks(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(5, RES - 5, (468, 2)).astype(np.float32)


def test_round_trip_keeps_pixels_landmarks_masks_and_provenance(tmp_path: Path, crops: np.ndarray) -> None:
    mask = np.zeros((RES, RES), np.float32)
    mask[16:48, 16:48] = 1.0
    with FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE) as writer:
        writer.add(crops[0], landmarks=_landmarks(0), mask=mask, source="clip.mp4", frame=7)
        writer.add(crops[1], source="clip.mp4", frame=9)
    faceset = Faceset.load(tmp_path / "fs")
    assert len(faceset) == 2 and faceset.resolution == RES and faceset.face_type is FaceType.WHOLE_FACE
    np.testing.assert_array_equal(faceset.images, crops[:2])  # PNG is lossless, BGR order kept
    assert faceset.items[0].landmarks is not None
    np.testing.assert_allclose(faceset.items[0].landmarks, _landmarks(0), atol=0.006)
    assert faceset.items[1].landmarks is None and not faceset.has_landmarks
    assert faceset.masks[0] is not None and faceset.masks[1] is None
    np.testing.assert_array_equal(faceset.masks[0] > 127, mask > 0.5)
    assert (faceset.items[0].source, faceset.items[0].frame) == ("clip.mp4", 7)
    index = json.loads((tmp_path / "fs" / "faceset.json").read_text())
    assert index["format"] == "realtime_swap.faceset" and index["version"] == 1
    assert [i["image"] for i in index["items"]] == ["000000.png", "000001.png"]


def test_writer_resumes_and_knows_processed_frames(tmp_path: Path, crops: np.ndarray) -> None:
    with FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE) as writer:
        writer.add(crops[0], source="a.mp4", frame=0)
        writer.add(crops[1], source="a.mp4", frame=1)
    with FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE) as writer:
        assert len(writer) == 2 and writer.contains("a.mp4", 1) and not writer.contains("a.mp4", 2)
        writer.add(crops[2], source="a.mp4", frame=2)
    faceset = Faceset.load(tmp_path / "fs")
    assert [item.image for item in faceset.items] == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_array_equal(faceset.images[2], crops[2])


def test_interrupted_writer_resumes_from_its_last_index(tmp_path: Path, crops: np.ndarray) -> None:
    writer = FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE, flush_every=2)
    for i in range(3):
        writer.add(crops[i], source="v.mp4", frame=i)
    del writer  # a crash: no close(), face 2 was written but not indexed
    resumed = FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE)
    assert len(resumed) == 2 and resumed.contains("v.mp4", 1) and not resumed.contains("v.mp4", 2)
    resumed.add(crops[3], source="v.mp4", frame=2)
    resumed.close()
    faceset = Faceset.load(tmp_path / "fs")
    assert len(faceset) == 3 and faceset.items[2].image == "000002.png"
    np.testing.assert_array_equal(faceset.images[2], crops[3])  # the orphan file was replaced


def test_writer_refuses_to_mix_resolutions_or_face_types(tmp_path: Path, crops: np.ndarray) -> None:
    with FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE) as writer:
        writer.add(crops[0])
        with pytest.raises(FacesetError, match="64x64"):
            writer.add(cv2.resize(crops[0], (32, 32)))
        with pytest.raises(FacesetError, match=r"expected \(H, W, 3\) uint8 BGR"):
            writer.add(crops[0].astype(np.float32))
        with pytest.raises(FacesetError, match=r"\(468, 2\)"):
            writer.add(crops[1], landmarks=np.zeros((68, 2), np.float32))
    with pytest.raises(FacesetError, match="cannot append 128 px"):
        FacesetWriter(tmp_path / "fs", 128, FaceType.WHOLE_FACE)
    with pytest.raises(FacesetError, match="cannot append 64 px full"):
        FacesetWriter(tmp_path / "fs", RES, FaceType.FULL)


def test_jpeg_facesets_load(tmp_path: Path, crops: np.ndarray) -> None:
    with FacesetWriter(tmp_path / "fs", RES, FaceType.FULL, image_format=ImageFormat.JPEG) as writer:
        writer.add(crops[0])
    faceset = Faceset.load(tmp_path / "fs")
    assert faceset.items[0].image.endswith(".jpg") and faceset.face_type is FaceType.FULL
    assert np.abs(faceset.images[0].astype(int) - crops[0]).mean() < 4  # quality 95


def test_empty_faceset_is_refused(tmp_path: Path) -> None:
    FacesetWriter(tmp_path / "fs", RES, FaceType.WHOLE_FACE).close()
    with pytest.raises(FacesetError, match="is empty"):
        Faceset.load(tmp_path / "fs")


def test_missing_folder_or_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FacesetError, match="not a folder"):
        Faceset.load(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FacesetError, match=r"faceset\.json is missing"):
        Faceset.load(tmp_path / "plain")


def test_mixed_resolutions_name_the_file(tmp_path: Path) -> None:
    folder = write_packaged_faceset(tmp_path / "fs", ["t1_a"], 3, RES)
    cv2.imwrite(str(folder / "000001.png"), np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(FacesetError, match=r"mixed resolutions: .*000001\.png is 48x48 px"):
        Faceset.load(folder)


def test_unreadable_and_missing_files_name_the_file(tmp_path: Path) -> None:
    folder = write_packaged_faceset(tmp_path / "fs", ["t1_b"], 3, RES)
    (folder / "000002.png").write_bytes(b"not a png at all")
    with pytest.raises(FacesetError, match=r"unreadable faceset image: .*000002\.png"):
        Faceset.load(folder)
    (folder / "000002.png").unlink()
    with pytest.raises(FacesetError, match=r"faceset image missing: .*000002\.png"):
        Faceset.load(folder)


def test_malformed_index_is_refused(tmp_path: Path) -> None:
    folder = write_packaged_faceset(tmp_path / "fs", ["t1_c"], 2, RES)
    index = json.loads((folder / "faceset.json").read_text())
    index["items"][1]["landmarks"] = [[1.0, 2.0]] * 10
    (folder / "faceset.json").write_text(json.dumps(index))
    with pytest.raises(FacesetError, match=r"item 1: landmarks must be \(468, 2\)"):
        Faceset.load(folder)
    index["face_type"] = "sideways"
    (folder / "faceset.json").write_text(json.dumps(index))
    with pytest.raises(FacesetError, match="face_type 'sideways'"):
        Faceset.load(folder)
    (folder / "faceset.json").write_text("{broken")
    with pytest.raises(FacesetError, match="unreadable faceset index"):
        Faceset.load(folder)


def test_packaged_faces_are_real_and_jittered() -> None:
    crops = jittered_crops("t1_d", 3, RES, seed=0)
    assert crops.shape == (3, RES, RES, 3) and crops.dtype == np.uint8
    assert crops.std() > 20  # a photograph, not a flat fill
    assert np.abs(crops[0].astype(int) - crops[1]).mean() > 5  # jitter moves the crop
    np.testing.assert_array_equal(crops, jittered_crops("t1_d", 3, RES, seed=0))
