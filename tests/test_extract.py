"""Faceset extraction on real media: a video written from the demo source, and packaged face photos."""

from __future__ import annotations

import argparse
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime_swap.align import _DFL_FIT_INDICES, DFL_TEMPLATE_33, arcface_template, face_transform, transform_points
from realtime_swap.detect.mesh import keypoints_from_mesh, mesh_to_68
from realtime_swap.errors import ConfigError, SourceError
from realtime_swap.sources.demo import DemoSource, insightface_images_dir
from realtime_swap.train import extract_command
from realtime_swap.train.extract import (
    ExtractOptions,
    FaceExtractor,
    RejectReason,
    blur_score,
    extract_inputs,
)
from realtime_swap.train.faceset import Faceset
from realtime_swap.types import FaceType

RES = 128
# What the test video holds, frame by frame: demo frames (index), a blurred copy, and a frame with no face.
VIDEO_PLAN = ("demo:0", "demo:0", "demo:0", "demo:45", "blur:90", "blank", "demo:150")


def _plan_frame(source: DemoSource, step: str) -> np.ndarray:
    if step == "blank":
        return np.full((source.height, source.width, 3), 128, np.uint8)
    kind, index = step.split(":")
    image = source.render(int(index))
    return cv2.GaussianBlur(image, (0, 0), 4.0) if kind == "blur" else image


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H.264 mp4 of VIDEO_PLAN at 480 x 360 (the astronaut moving under changing light)."""
    path = tmp_path_factory.mktemp("extract_video") / "demo.mp4"
    source = DemoSource(480, 360, realtime=False)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 480, 360, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}  # lossless: codec noise would sharpen the blur
        for i, step in enumerate(VIDEO_PLAN):
            frame = av.VideoFrame.from_ndarray(_plan_frame(source, step), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def extractor() -> FaceExtractor:
    return FaceExtractor(ExtractOptions(resolution=RES, face_type=FaceType.WHOLE_FACE))


def _dfl_template_in_crop(face_type: FaceType, size: int) -> np.ndarray:
    """DFL's mean face (the 33 fitted points) in crop px: align a face that *is* the template."""
    lm68 = np.zeros((68, 2))
    lm68[list(_DFL_FIT_INDICES)] = DFL_TEMPLATE_33 * 100.0
    lm68[[i for i in range(68) if i not in _DFL_FIT_INDICES]] = DFL_TEMPLATE_33.mean(axis=0) * 100.0
    return transform_points(DFL_TEMPLATE_33 * 100.0, face_transform(lm68, face_type, size))


def test_video_extraction_counts_rejections_and_aligns_to_template(
    demo_video: Path, extractor: FaceExtractor, tmp_path: Path
) -> None:
    out = tmp_path / "faceset"
    extractor.reset()
    summary = extract_inputs([demo_video], out, progress=False, extractor=extractor)

    assert summary.frames == len(VIDEO_PLAN)
    assert summary.rejected[RejectReason.NO_FACE] == 1  # the blank frame
    assert summary.rejected[RejectReason.BLURRY] == 1  # the Gaussian-blurred frame
    assert summary.rejected[RejectReason.DUPLICATE] == 2  # the two repeats of frame 0
    assert summary.kept == 3  # frames 0, 45 (other light) and 150 (other light and pose)
    assert "duplicate 2" in summary.format() and "blurry 1" in summary.format()

    faceset = Faceset.load(out)
    assert faceset.resolution == RES and faceset.face_type is FaceType.WHOLE_FACE
    assert [(item.source, item.frame) for item in faceset.items] == [("demo.mp4", 0), ("demo.mp4", 3), ("demo.mp4", 6)]
    template = _dfl_template_in_crop(FaceType.WHOLE_FACE, RES)
    for item, mask, image in zip(faceset.items, faceset.masks, faceset.images, strict=True):
        assert item.landmarks is not None and mask is not None
        fitted = mesh_to_68(item.landmarks)[list(_DFL_FIT_INDICES)]
        # a real face sits on DFL's mean face up to its own shape: a few % of the crop, not tens of px
        assert np.linalg.norm(fitted - template, axis=1).mean() < 0.03 * RES
        # re-aligning an aligned crop changes (almost) nothing
        again = face_transform(item.landmarks, FaceType.WHOLE_FACE, RES)
        np.testing.assert_allclose(again[:, :2], np.eye(2), atol=0.02)
        np.testing.assert_allclose(again[:, 2], 0.0, atol=1.5)
        # the mask is the face: it covers the eyes and the nose tip, not the crop corners
        kps = np.rint(keypoints_from_mesh(item.landmarks)).astype(int)
        assert all(mask[y, x] == 255 for x, y in kps[:3])
        assert mask[0, 0] == 0 and mask[-1, -1] == 0
        assert blur_score(image, mask / 255.0) > ExtractOptions().blur_threshold


def test_resume_skips_frames_already_extracted(demo_video: Path, extractor: FaceExtractor, tmp_path: Path) -> None:
    out = tmp_path / "faceset"
    extractor.reset()
    first = extract_inputs([demo_video], out, progress=False, extractor=extractor)
    files = sorted(p.name for p in out.iterdir())
    extractor.reset()
    second = extract_inputs([demo_video], out, progress=False, extractor=extractor)
    assert second.resumed == first.kept == 3  # frames 0, 3 and 6 are not analysed again
    assert second.kept == 0
    assert len(Faceset.load(out)) == 3
    assert sorted(p.name for p in out.iterdir()) == files


def test_image_folder_arcface_keypoints_on_template(extractor: FaceExtractor, tmp_path: Path) -> None:
    folder = insightface_images_dir()
    if folder is None:
        pytest.skip("insightface's bundled images are not installed (pip install --no-deps insightface)")
    from skimage import data

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "astronaut.png"), data.astronaut()[:, :, ::-1])
    shutil.copy(folder / "t1.jpg", images / "t1.jpg")
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    size = 112
    options = ExtractOptions(resolution=size, face_type=FaceType.ARCFACE)
    arc = FaceExtractor(options, analyzer=extractor.analyzer)
    summary = extract_inputs([images], tmp_path / "arc", progress=False, extractor=arc)

    assert summary.rejected[RejectReason.UNREADABLE] == 1
    assert summary.kept == 7  # the astronaut and the six people of t1.jpg
    faceset = Faceset.load(tmp_path / "arc")
    assert sorted({str(item.source) for item in faceset.items}) == ["astronaut.png", "t1.jpg"]
    template = arcface_template(size)
    for item in faceset.items:
        assert item.landmarks is not None
        err = np.linalg.norm(keypoints_from_mesh(item.landmarks) - template, axis=1)
        # a least-squares fit of 5 points to a mean face: a broad smile (the astronaut) or a turned head
        # (t1.jpg) moves the mouth corners or the nose tip up to ~12 px at 112 px; a wrong crop is off by tens
        assert err.mean() < 7.0 and err.max() < 14.0, f"{item.image}: {err.round(1)} px"


def test_bad_inputs_raise_clear_errors(tmp_path: Path, extractor: FaceExtractor) -> None:
    with pytest.raises(SourceError, match="not found"):
        extract_inputs([tmp_path / "missing.mp4"], tmp_path / "out", progress=False, extractor=extractor)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(SourceError, match=r"corrupt\.mp4"):
        extract_inputs([corrupt], tmp_path / "out", progress=False, extractor=extractor)
    with pytest.raises(ConfigError, match="resolution"):
        ExtractOptions(resolution=8)
    with pytest.raises(ConfigError, match="blur_threshold"):
        ExtractOptions(blur_threshold=-1.0)
    with pytest.raises(ConfigError, match="duplicate_window"):
        ExtractOptions(duplicate_window=0)


def test_cli_extracts_one_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skimage import data

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), data.astronaut()[:, :, ::-1])
    parser = argparse.ArgumentParser()
    extract_command.register(parser.add_subparsers())
    args = parser.parse_args(["extract", str(image), "--out", str(tmp_path / "fs"), "--resolution", "64", "--quiet"])
    assert args.func(args) == 0
    assert "1 faces kept" in capsys.readouterr().out
    faceset = Faceset.load(tmp_path / "fs")
    assert faceset.resolution == 64 and faceset.face_type is FaceType.WHOLE_FACE and len(faceset) == 1
