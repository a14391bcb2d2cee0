import numpy as np
import torch

from zsvc_pl.data.transforms import resize_short_side, square_crops
from zsvc_pl.model.preprocess import ClipNormalize


def test_square_crops_shapes_and_positions():
    frames = np.zeros((2, 40, 80, 3), dtype=np.uint8)
    frames[:, :, :40] = 255  # left half white
    one = square_crops(frames, 20, 1)
    assert one.shape == (1, 2, 3, 20, 20) and one.dtype == torch.uint8
    three = square_crops(frames, 20, 3)
    assert three.shape == (3, 2, 3, 20, 20)
    assert three[0].float().mean() > 250 and three[2].float().mean() < 5  # left crop white, right crop black
    assert 100 < three[1].float().mean() < 155  # the centre crop straddles the edge


def test_resize_short_side_keeps_aspect():
    x = torch.zeros(3, 60, 120, dtype=torch.uint8)
    assert resize_short_side(x, 30).shape == (3, 30, 60)


def test_clip_normalize_uses_backbone_mean_std():
    norm = ClipNormalize(4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(norm(x), torch.full((1, 3, 4, 4), 2.0))
    assert norm(torch.zeros(2, 3, 8, 12, dtype=torch.uint8)).shape == (2, 3, 4, 4)
