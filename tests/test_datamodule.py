from pathlib import Path

import pytest

from zsvc_pl import VideoDataModule
from zsvc_pl.labels import read_label_file


def test_folder_format_with_splits(video_root):
    dm = VideoDataModule(root=str(video_root), num_frames=4, frame_size=32, batch_size=3, num_workers=0)
    assert dm.class_names == sorted(p.name for p in (video_root / "train").iterdir())
    dm.setup("fit")
    assert len(dm.train_set) == 8 and len(dm.val_set) == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (3, 1, 4, 3, 32, 32)
    dm.setup("test")
    assert len(dm.test_set) == 8


def test_test_views_multiply(video_root):
    dm = VideoDataModule(root=str(video_root), num_frames=4, num_clips=2, num_crops=3, frame_size=32, num_workers=0)
    dm.setup("test")
    assert dm.test_set[0]["video"].shape == (6, 4, 3, 32, 32)


def test_list_format_and_label_files(tmp_path, video_root):
    (tmp_path / "labels.csv").write_text("id,name\n0,jump\n1,run\n")
    assert read_label_file(tmp_path / "labels.csv") == ["jump", "run"]
    (tmp_path / "ids.txt").write_text("1 run\n0 jump\n")
    assert read_label_file(tmp_path / "ids.txt") == ["jump", "run"]
    videos = sorted(Path(video_root, "test").rglob("*.mp4"))
    lines = [f"{p.relative_to(video_root)} {i % 2}" for i, p in enumerate(videos)]
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    dm = VideoDataModule(root=str(video_root), format="list", test_list=str(tmp_path / "test.txt"),
                         label_file=str(tmp_path / "labels.csv"), num_workers=0, frame_size=32, num_frames=2)
    dm.setup("test")
    assert dm.class_names == ["jump", "run"]
    assert [r.label for r in dm.test_set.records] == [i % 2 for i in range(len(videos))]


def test_ucf101_and_hmdb51_split_files(tmp_path):
    ucf = tmp_path / "ucf"
    ucf.mkdir()
    (ucf / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    (ucf / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g08_c01.avi 2\n")
    (ucf / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\n")
    dm = VideoDataModule(root="/data/UCF101", format="ucf101", split_dir=str(ucf), num_workers=0)
    assert dm.class_names == ["ApplyEyeMakeup", "YoYo"]
    dm.setup("test")
    assert [(r.path, r.label) for r in dm.test_set.records] == [("/data/UCF101/YoYo/v_YoYo_g01_c01.avi", 1)]
    hm = tmp_path / "hmdb"
    hm.mkdir()
    (hm / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (hm / "wave_test_split1.txt").write_text("d.avi 2\n")
    dm = VideoDataModule(root="/data/hmdb", format="hmdb51", split_dir=str(hm), num_workers=0)
    assert dm.class_names == ["brush_hair", "wave"]
    dm.setup("fit")
    assert [r.path for r in dm.train_set.records] == ["/data/hmdb/brush_hair/a.avi"]
    assert sorted(r.path for r in dm.val_set.records) == ["/data/hmdb/brush_hair/b.avi", "/data/hmdb/wave/d.avi"]


def test_base_novel_auto_split_ties_by_name_and_k_shot(video_root, tmp_path):
    dm = VideoDataModule(root=str(video_root), base_novel="auto", num_workers=0, k_shot=1, frame_size=32)
    names = dm.class_names
    assert dm.base_classes == [0, 1]  # equal counts: the first half by name
    dm.setup("fit")
    assert sorted(r.label for r in dm.train_set.records) == [0, 1]
    f = tmp_path / "base.txt"
    f.write_text(names[3] + "\n" + names[1] + "\n")
    assert VideoDataModule(root=str(video_root), base_novel=str(f)).base_classes == [1, 3]
    f.write_text("not a class\n")
    with pytest.raises(ValueError, match="not among"):
        VideoDataModule(root=str(video_root), base_novel=str(f))


def test_base_classes_from_vifi_style_train_list(tmp_path, video_root):
    (tmp_path / "labels.csv").write_text("id,name\n0,a\n1,b\n2,c\n3,d\n")
    videos = sorted(Path(video_root, "test").rglob("*.mp4"))
    (tmp_path / "base_train.txt").write_text(f"{videos[0]} 2\n{videos[1]} 0\n")
    (tmp_path / "test.txt").write_text("".join(f"{p} {i % 4}\n" for i, p in enumerate(videos)))
    dm = VideoDataModule(format="list", train_list=str(tmp_path / "base_train.txt"),
                         test_list=str(tmp_path / "test.txt"), label_file=str(tmp_path / "labels.csv"),
                         base_novel="train", num_workers=0)
    assert dm.base_classes == [0, 2]


def test_video_listing_follows_linked_folders_once_and_skips_hidden_files(tmp_path, video_root):
    from zsvc_pl.data import list_videos

    lib = tmp_path / "library"
    (lib / "own").mkdir(parents=True)
    clip = next(Path(video_root, "test").rglob("*.mp4"))
    (lib / "own" / "a.mp4").write_bytes(clip.read_bytes())
    (lib / "own" / ".hidden.mp4").write_bytes(clip.read_bytes())
    (lib / "own" / "notes.txt").write_text("not a video")
    (lib / "linked").symlink_to(Path(video_root, "test"), target_is_directory=True)  # a library built of links
    (lib / "own" / "loop").symlink_to(lib, target_is_directory=True)  # a link back up the tree
    found = list_videos(lib)
    linked = sorted(str(lib / "linked" / p.relative_to(Path(video_root, "test")))
                    for p in Path(video_root, "test").rglob("*.mp4"))
    assert found == sorted([str(lib / "own" / "a.mp4"), *linked])  # each real folder walked once, no loop
    assert len(linked) == 8
