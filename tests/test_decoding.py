"""Decoding: right frames at the right size, and every kind of bad input gives a named error."""

from pathlib import Path

import av
import numpy as np
import pytest

from zsvc_pl.data import FrameReader, VideoClassificationDataset, VideoRecord, collate_videos
from zsvc_pl.data.decoding import VideoDecodeError, open_video, read_frames, scaled_size
from zsvc_pl.data.sampling import FrameSampler
from zsvc_pl.demo.world import write_video


def ramp_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10 * i, so decoded indices can be read back from pixel values."""
    return np.stack([np.full((h, w, 3), 10 * i, dtype=np.uint8) for i in range(n)])


def write_with(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, fps: int = 10) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            fmt = "gray" if pix_fmt == "gray" else "rgb24"
            data = f[..., 0] if fmt == "gray" else f
            for p in s.encode(av.VideoFrame.from_ndarray(data, format=fmt)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path




@pytest.mark.parametrize("backend", ["sparse", "decord", "pyav"])
def test_decodes_the_requested_frames(ramp_video, backend):
    video = open_video(ramp_video, backend=backend)
    assert video.num_frames == 20
    frames = read_frames(video, [0, 5, 19], ramp_video)
    assert frames.shape == (3, 48, 64, 3)
    assert np.allclose(frames.mean(axis=(1, 2, 3)), [0, 50, 190], atol=3)


@pytest.mark.parametrize("backend", ["sparse", "decord", "pyav"])
def test_decodes_at_reduced_size(ramp_video, backend):
    frames = read_frames(open_video(ramp_video, short_side=24, backend=backend), [1], ramp_video)
    assert frames.shape == (1, 24, 32, 3)


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> str:
    """H.264 with B-frames and a keyframe every 16 frames; every frame a different random picture."""
    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"g": "16", "bf": "3", "b-pyramid": "normal", "sc_threshold": "0", "threads": "1"}
        base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        for i in range(96):
            frame = np.roll(base, 2 * i, axis=1)  # motion, so P and B frames carry real prediction
            frame[:8, :8] = 2 * i  # and a mark that tells the frames apart
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


@pytest.mark.parametrize("indices", [[0, 5, 17, 31, 32, 60, 94, 95], [95, 3, 3, 40], [47], list(range(96))])
@pytest.mark.parametrize("short_side", [None, 24])
def test_sparse_decoding_gives_the_frames_a_full_decode_gives(gop_video, indices, short_side):
    sparse = open_video(gop_video, short_side, backend="sparse")
    full = open_video(gop_video, short_side, backend="pyav")
    assert type(sparse).__name__ == "_SparseVideo" and sparse.num_frames == full.num_frames == 96
    assert np.array_equal(read_frames(sparse, indices, gop_video), read_frames(full, indices, gop_video))


def test_sparse_decoding_skips_what_the_requested_frames_do_not_need(gop_video):
    video = open_video(gop_video, backend="sparse")
    assert read_frames(video, [8, 40, 88], gop_video).shape == (3, 48, 64, 3)
    # Seeks to the keyframes at 32 and 80 and drops non-reference B-frames: far fewer frames than the 89
    # a sequential decode up to frame 88 goes through.
    assert video.frames_decoded < 40, video.frames_decoded
    everything = open_video(gop_video, backend="sparse")
    read_frames(everything, list(range(96)), gop_video)
    assert everything.frames_decoded == 96


def test_a_sparse_read_opens_the_file_once_and_a_second_request_reopens_it(gop_video, monkeypatch):
    from zsvc_pl.data import backends, decoding

    opened = []
    real_open = backends._open_av

    def counting_open(path):
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(backends, "_open_av", counting_open)
    monkeypatch.setattr(decoding, "_open_av", counting_open)
    expected = read_frames(open_video(gop_video, backend="pyav"), [3, 50, 95], gop_video)
    opened.clear()
    video = open_video(gop_video, backend="sparse")
    assert np.array_equal(read_frames(video, [3, 50, 95], gop_video), expected)
    assert len(opened) == 1  # the index pass's container is the one the frames are decoded from
    assert np.array_equal(read_frames(video, [95, 50, 3], gop_video), expected[::-1])
    assert len(opened) == 2


def test_a_failing_reader_falls_back_to_sequential_decoding(gop_video, monkeypatch):
    from zsvc_pl.data import decoding

    expected = read_frames(open_video(gop_video, backend="pyav"), [3, 50], gop_video)
    video = open_video(gop_video)
    assert type(video).__name__ == "_SparseVideo"

    def broken(self, indices):
        raise RuntimeError("inconsistent timestamps")

    monkeypatch.setattr(decoding._SparseVideo, "get", broken)
    assert np.array_equal(read_frames(video, [3, 50], gop_video), expected)


def test_scaled_size_never_upscales_and_keeps_even_sides():
    assert scaled_size(1280, 720, 224) == (398, 224)
    assert scaled_size(320, 240, 480) == (320, 240)
    assert scaled_size(1080, 1350, 224) == (224, 280)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, ramp_video) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["random_bytes"] = d / "noise.mp4"
    files["random_bytes"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    data = Path(ramp_video).read_bytes()
    files["truncated"] = d / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["audio_only"] = d / "audio.mp4"
    with av.open(str(files["audio_only"]), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    files["folder"] = d / "clips.mp4"  # a folder named like a video
    files["folder"].mkdir()
    files["zero_frames"] = d / "zero.mkv"  # a video stream with no packets beside an audio stream
    with av.open(str(files["zero_frames"]), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        s = c.add_stream("aac", rate=16000)
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    return files


@pytest.mark.parametrize("kind,reason", [
    ("empty", "empty file"), ("random_bytes", "not a readable video"), ("audio_only", "no video stream"),
    ("zero_frames", "no frames"), ("missing", "file not found"), ("folder", "a folder, not a video file"),
])
def test_bad_inputs_raise_named_errors(bad_inputs, kind, reason, tmp_path):
    path = bad_inputs.get(kind, tmp_path / "missing.mp4")
    with pytest.raises(VideoDecodeError, match=reason) as err:
        read_frames(open_video(path), [0, 1], str(path))
    assert err.value.path == str(path)


def test_truncated_file_gives_frames_or_named_error(bad_inputs):
    path = bad_inputs["truncated"]
    try:
        video = open_video(path)
        frames = read_frames(video, list(range(video.num_frames)), str(path))
        assert frames.shape[1:] == (48, 64, 3)
    except VideoDecodeError as e:
        assert e.path == str(path)


@pytest.mark.parametrize("name,codec,pix_fmt,size", [
    ("odd.mkv", "libx264", "yuv444p", (17, 33)), ("gray.mkv", "ffv1", "gray", (32, 48)),
    ("tiny.avi", "mpeg4", "yuv420p", (2, 2)), ("anim.gif", "gif", "rgb8", (24, 32)),
])
def test_unusual_videos_decode(tmp_path, name, codec, pix_fmt, size):
    path = write_with(tmp_path / name, ramp_frames(6, *size), codec, pix_fmt)
    ds = VideoClassificationDataset([VideoRecord(str(path))], FrameReader(FrameSampler(4), 16))
    sample = ds[0]
    assert "error" not in sample, sample.get("error")
    assert sample["video"].shape == (1, 4, 3, 16, 16)


@pytest.mark.parametrize("backend", ["sparse", "pyav"])
def test_a_rotated_video_comes_out_upright(tmp_path, backend):
    """Phones store the picture sideways with a display matrix; the model must see it as a player shows it."""
    stored = np.zeros((4, 32, 48, 3), dtype=np.uint8)
    stored[:, :16, :24] = 255  # bright top-left quarter, as stored
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.set_display_rotation(-90)  # shown turned 90 degrees clockwise
        for f in stored:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    frames = read_frames(open_video(path, backend=backend), [0, 3], str(path))
    assert frames.shape == (2, 48, 32, 3)  # portrait
    bright = frames.mean(axis=(0, 3)) > 128
    assert bright[:24, 16:].mean() > 0.9  # turned clockwise: the bright quarter is now top right
    assert bright[24:].mean() < 0.1 and bright[:, :16].mean() < 0.1


def test_short_video_repeats_frames(tmp_path):
    path = tmp_path / "two.mp4"
    write_video(path, ramp_frames(2, 32, 32))
    sample = VideoClassificationDataset([VideoRecord(str(path))], FrameReader(FrameSampler(4), 32))[0]
    means = sample["video"][0].float().mean(dim=(1, 2, 3))
    assert np.allclose(means.numpy(), [0, 0, 10, 10], atol=3)


def test_dataset_skips_and_collate_reports(bad_inputs, ramp_video):
    records = [VideoRecord(ramp_video, 0), VideoRecord(str(bad_inputs["empty"]), 1)]
    ds = VideoClassificationDataset(records, FrameReader(FrameSampler(4), 32))
    batch = collate_videos([ds[0], ds[1]])
    assert batch["video"].shape == (1, 1, 4, 3, 32, 32)
    assert batch["label"].tolist() == [0]
    assert batch["errors"] == [(str(bad_inputs["empty"]), "empty file (0 bytes)")]
    strict = VideoClassificationDataset(records, FrameReader(FrameSampler(4), 32), on_error="raise")
    with pytest.raises(VideoDecodeError, match="empty file"):
        strict[1]


def test_a_hanging_decode_is_cut_off_and_reported(ramp_video, monkeypatch):
    import time

    reader = FrameReader(FrameSampler(4), 32, timeout_s=0.5)
    ds = VideoClassificationDataset([VideoRecord(ramp_video), VideoRecord(ramp_video)], reader)
    real_read = reader._read
    calls = []

    def read(path, rng=None):
        calls.append(path)
        if len(calls) == 1:
            time.sleep(3)  # stands in for a decoder stuck inside C code
        return real_read(path, rng)

    monkeypatch.setattr(reader, "_read", read)
    start = time.perf_counter()
    hung, fine = ds[0], ds[1]
    assert time.perf_counter() - start < 2.5
    assert "timed out after 0.5 s" in hung["error"]
    assert fine["video"].shape == (1, 4, 3, 32, 32)


def test_a_two_hour_video_gives_frames_spread_over_its_length(tmp_path):
    path = tmp_path / "two_hours.mp4"
    n = 2 * 3600  # one frame per second for two hours
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=1)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        s.options = {"preset": "ultrafast", "g": "600"}
        for i in range(n):
            level = (i * 255) // n
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), level, dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    video = open_video(path)
    assert video.num_frames == n
    sample = VideoClassificationDataset([VideoRecord(str(path))], FrameReader(FrameSampler(8), 16))[0]
    means = sample["video"][0].float().mean(dim=(1, 2, 3)).numpy()
    assert np.allclose(means, (np.arange(8) + 0.5) / 8 * 255, atol=6)  # frames from across the two hours


def test_one_scaler_per_video_gives_the_pixels_of_a_per_frame_conversion(ramp_video):
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter

    from zsvc_pl.data.backends import _to_rgb, scaled_size

    reformatter = VideoReformatter()
    with av.open(ramp_video) as container:
        frames = list(container.decode(video=0))
    for short_side in (None, 24):
        w, h = scaled_size(frames[0].width, frames[0].height, short_side)
        for frame in frames:
            expected = frame.to_ndarray(format="rgb24", width=w, height=h)
            assert np.array_equal(_to_rgb(frame, short_side, reformatter, ramp_video), expected)


def test_mpeg_ts_frames_are_the_frames_asked_for(tmp_path):
    """decord returned frames 8-12 positions late from an MPEG-TS stream: auto must not use it there."""
    import av

    from zsvc_pl.demo.world import write_event_stream

    path = str(write_event_stream(tmp_path / "live.ts"))
    with av.open(path) as container:
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
    video = open_video(path)
    assert video.num_frames == 48
    wanted = [0, 8, 16, 24, 40, 47]
    assert np.array_equal(read_frames(video, wanted, path), full[wanted])


@pytest.mark.parametrize("backend", ["sparse", "decord"])
def test_keyframe_seeking_takes_the_nearest_keyframe_in_each_segment_and_decodes_little(gop_video, backend):
    video = open_video(gop_video, backend=backend)
    assert video.keyframes == [0, 16, 32, 48, 64, 80]
    exact = FrameReader(FrameSampler(6), 48, backend=backend)
    keyframe = FrameReader(FrameSampler(6), 48, backend=backend, seek="keyframe")
    assert exact.read(gop_video).indices == [[8, 24, 40, 56, 72, 88]]
    clip = keyframe.read(gop_video)
    assert clip.indices == [[0, 16, 32, 48, 64, 80]]  # ties go to the earlier keyframe
    full = open_video(gop_video, 48, backend="pyav")
    assert np.array_equal(clip.frames[0].permute(0, 2, 3, 1).numpy(),
                          read_frames(full, clip.indices[0], gop_video)[:, :, 8:56])  # the same pixels, centre crop
    assert keyframe.sampling_key == exact.sampling_key + ",seek=keyframe"  # kept apart in caches and libraries
    # keyframes sparser than the samples: the ones without a keyframe in their segment stay exact, none repeats
    dense = FrameReader(FrameSampler(12), 48, backend=backend, seek="keyframe").read(gop_video).indices[0]
    assert dense == [0, 16, 20, 32, 36, 48, 52, 64, 68, 80, 84, 92]
    assert keyframe.times(gop_video) == [i / 25 for i in clip.indices[0]]


def test_keyframe_reads_decode_a_frame_each(gop_video):
    snapped = open_video(gop_video, backend="sparse")
    read_frames(snapped, [0, 16, 32, 48, 64, 80], gop_video)
    exact = open_video(gop_video, backend="sparse")
    read_frames(exact, [8, 24, 40, 56, 72, 88], gop_video)
    assert snapped.frames_decoded <= 6 + 3 < exact.frames_decoded  # (+3: B-frames the decoder may hand out)


def test_sequential_reading_has_no_keyframes_and_seek_is_checked(gop_video):
    from zsvc_pl import ZeroShotVideoClassifier, VideoDataModule

    assert open_video(gop_video, backend="pyav").keyframes == []
    reader = FrameReader(FrameSampler(6), 48, backend="pyav", seek="keyframe")
    assert reader.read(gop_video).indices == [[8, 24, 40, 56, 72, 88]]  # exact where nothing is cheaper
    with pytest.raises(ValueError, match="seek must be one of exact, keyframe"):
        FrameReader(FrameSampler(6), seek="nearest")
    with pytest.raises(ValueError, match="seek must be one of exact, keyframe"):
        ZeroShotVideoClassifier("demo", "demo", seek="fast")
    with pytest.raises(ValueError, match="data.seek must be one of"):
        VideoDataModule(root=str(Path(gop_video).parent), seek="fast")
