"""The one factory of image transforms: evaluation (resize, centre crop) and augmentation (random resized crop,
flip), each followed by ToTensor and the network's normalisation."""
from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    augment: bool = False,
    squash: bool = False,
) -> transforms.Compose:
    """Resize + CenterCrop (or, with `augment`, RandomResizedCrop + RandomHorizontalFlip), ToTensor, Normalize.

    `squash` resizes to a `resize` x `resize` square (timm's crop mode "squash"), not the shorter side to `resize`."""
    if augment:
        geometry = [transforms.RandomResizedCrop(crop, interpolation=interpolation), transforms.RandomHorizontalFlip()]
    else:
        size = (resize, resize) if squash else resize
        geometry = [transforms.Resize(size, interpolation=interpolation), transforms.CenterCrop(crop)]
    return transforms.Compose([*geometry, transforms.ToTensor(), transforms.Normalize(mean, std)])


def reference_transform(
    resize: int = 256, crop: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """The reference tutorial's transform, for train and val alike: Resize, CenterCrop, ToTensor, Normalize."""
    return image_transform(resize, crop, mean, std)
