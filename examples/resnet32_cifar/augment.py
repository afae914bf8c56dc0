"""The six image augmentations of the study, tuned for 32x32 CIFAR-10 images.

Each augmentation changes a batch of `uint8` RGB images at a severity from 1 (mild)
to 5 (strong), keeps their shape, dtype and [0, 255] range, and gives the same result
for the same images and seed. The library defaults of albumentations are made for
photographs hundreds of pixels wide (a 7-pixel rain blur, 20-pixel drops); here every
size is chosen so that a 32x32 image stays recognisable at severity 1 and is clearly
harder, not destroyed, at severity 5. `augmentations.png` beside this file shows each
augmentation at each severity.

- point_noise: salt and pepper, a fraction of the pixels set to black or white.
- spot_noise: a few round blotches of random colour, like dirt on a lens.
- brightness: every pixel brighter or darker by a fixed amount, clipped.
- weather: rain, snow or fog, one of the three per image.
- zoom: zoom in or out about the centre, the border filled by reflection.
- rotation: a clockwise or anticlockwise rotation, the border filled by reflection.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from pytest_dlcoverage.errors import DLCoverageError

# albumentations otherwise asks PyPI for a newer version on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402  (installed with albumentations; only its border-mode constants)

AUGMENTATIONS = ("point_noise", "spot_noise", "brightness", "weather", "zoom", "rotation")
SEVERITIES = (1, 2, 3, 4, 5)

# Each table is indexed by severity - 1.
_POINT_NOISE_FRACTION = (0.02, 0.04, 0.07, 0.10, 0.15)
_SPOTS_PER_IMAGE = (1, 2, 3, 4, 6)
_SPOT_RADIUS_PX = (2.0, 2.5, 3.0, 3.5, 4.0)
_BRIGHTNESS_SHIFT = (0.06, 0.12, 0.18, 0.24, 0.30)  # fraction of the 255 range
_RAIN_TYPE = ("drizzle", "default", "default", "heavy", "heavy")  # 8, 10, 10, 32, 32 drops
_RAIN_DROP_LENGTH_PX = (2, 3, 3, 2, 3)
_RAIN_DIMMING = (0.95, 0.9, 0.85, 0.8, 0.75)
_SNOW_FLAKE_FRACTION = (0.02, 0.035, 0.05, 0.07, 0.09)
_SNOW_WHITENING = (0.05, 0.1, 0.15, 0.2, 0.25)
_FOG_DENSITY = (0.25, 0.35, 0.45, 0.55, 0.65)
_FOG_GREY = 215.0
_ZOOM_FACTOR = (1.1, 1.2, 1.3, 1.45, 1.6)
_ROTATION_DEGREES = (6.0, 12.0, 18.0, 24.0, 30.0)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DLCoverageError(
            "expected `images` as a uint8 array of shape (n, height, width, 3); "
            f"received dtype={images.dtype}, shape={images.shape}"
        )
    return images


def _check_severity(severity: int) -> int:
    if severity not in SEVERITIES:
        raise DLCoverageError(
            f"expected `severity` to be one of {SEVERITIES}; received severity={severity!r}"
        )
    return int(severity)


def _apply_transform(
    transform: A.BasicTransform, images: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    # A fresh pipeline seeded from `rng` makes the result independent of any earlier
    # use of the transform.
    pipeline = A.Compose([transform], seed=int(rng.integers(2**31)))
    return np.stack([pipeline(image=image)["image"] for image in images])


def _point_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    fraction = _POINT_NOISE_FRACTION[severity - 1]
    transform = A.SaltAndPepper(amount=(fraction, fraction), salt_vs_pepper=(0.5, 0.5), p=1.0)
    return _apply_transform(transform, images, rng)


def _spot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    n, height, width, _ = images.shape
    spots = _SPOTS_PER_IMAGE[severity - 1]
    radius = _SPOT_RADIUS_PX[severity - 1]
    rows, cols = np.mgrid[0:height, 0:width]
    out = images.astype(np.float32)
    for i in range(n):
        for _ in range(spots):
            centre_row, centre_col = rng.uniform(0, height), rng.uniform(0, width)
            spot_radius = radius * rng.uniform(0.7, 1.3)
            colour = rng.uniform(0, 255, size=3)
            distance = np.hypot(rows + 0.5 - centre_row, cols + 0.5 - centre_col)
            # One pixel of soft edge, so a spot is a blotch rather than a hard-edged patch.
            alpha = np.clip(spot_radius - distance, 0.0, 1.0)[..., None]
            out[i] = alpha * colour + (1 - alpha) * out[i]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    shift = _BRIGHTNESS_SHIFT[severity - 1] * 255
    signs = rng.choice([-1.0, 1.0], size=(len(images), 1, 1, 1))
    return np.clip(images.astype(np.float32) + signs * shift, 0, 255).astype(np.uint8)


def _rain(images: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    transform = A.RandomRain(
        slant_range=(-10, 10),
        drop_length=_RAIN_DROP_LENGTH_PX[level],
        drop_width=1,
        drop_color=(200, 200, 200),
        blur_value=1,
        brightness_coefficient=_RAIN_DIMMING[level],
        rain_type=_RAIN_TYPE[level],
        p=1.0,
    )
    return _apply_transform(transform, images, rng)


def _snow(images: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    # albumentations' snow either recolours whole regions ("texture") or bleaches
    # every dark pixel ("bleach"); at 32x32 both wipe the image, so flakes are drawn
    # here: scattered soft white points over a slightly whitened image.
    n, height, width, _ = images.shape
    flakes = rng.random((n, height, width)) < _SNOW_FLAKE_FRACTION[level]
    flakes = ndimage.gaussian_filter(flakes.astype(np.float32), sigma=(0, 0.6, 0.6)) * 2.5
    cover = np.clip(flakes, 0.0, 1.0)[..., None]
    whitened = images.astype(np.float32) * (1 - _SNOW_WHITENING[level])
    whitened += 255 * _SNOW_WHITENING[level]
    return np.clip(np.rint(cover * 255 + (1 - cover) * whitened), 0, 255).astype(np.uint8)


def _fog(images: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    # albumentations' fog ends with a blur that alone dominates at 32x32 and hardly
    # changes with the intensity, so fog is a blend towards grey-white whose density
    # varies smoothly across the image (smoothed noise, a few pixels in scale).
    n, height, width, _ = images.shape
    field = ndimage.gaussian_filter(rng.random((n, height, width)), sigma=(0, 4, 4))
    low = field.min(axis=(1, 2), keepdims=True)
    high = field.max(axis=(1, 2), keepdims=True)
    field = (field - low) / np.maximum(high - low, 1e-6)
    density = (_FOG_DENSITY[level] * (0.6 + 0.4 * field))[..., None]
    fogged = (1 - density) * images.astype(np.float32) + density * _FOG_GREY
    return np.clip(np.rint(fogged), 0, 255).astype(np.uint8)


def _weather(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    kinds = rng.integers(3, size=len(images))
    out = np.empty_like(images)
    for kind, apply in enumerate((_rain, _snow, _fog)):
        chosen = kinds == kind
        if chosen.any():
            out[chosen] = apply(images[chosen], severity - 1, rng)
    return out


def _either_way(
    images: np.ndarray,
    rng: np.random.Generator,
    make: Callable[[float], A.BasicTransform],
    values: tuple[float, float],
) -> np.ndarray:
    # Half the images (at random) get make(values[0]), the others make(values[1]).
    directions = rng.integers(2, size=len(images))
    out = np.empty_like(images)
    for direction, value in enumerate(values):
        chosen = directions == direction
        if chosen.any():
            out[chosen] = _apply_transform(make(value), images[chosen], rng)
    return out


def _zoom(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = _ZOOM_FACTOR[severity - 1]
    return _either_way(
        images,
        rng,
        lambda s: A.Affine(scale=(s, s), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        (factor, 1 / factor),
    )


def _rotation(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    degrees = _ROTATION_DEGREES[severity - 1]
    return _either_way(
        images,
        rng,
        lambda a: A.Rotate(limit=(a, a), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        (degrees, -degrees),
    )


_APPLY = {
    "point_noise": _point_noise,
    "spot_noise": _spot_noise,
    "brightness": _brightness,
    "weather": _weather,
    "zoom": _zoom,
    "rotation": _rotation,
}


def augment(images: np.ndarray, kind: str, severity: int, seed: int) -> np.ndarray:
    """Applies one augmentation at one severity to every image.

    Args:
        images: `(n, height, width, 3)` uint8 RGB images; left unchanged.
        kind: one of `AUGMENTATIONS`.
        severity: 1 (mild) to 5 (strong).
        seed: the same images, kind, severity and seed give the same result.

    Returns:
        A new uint8 array of the shape of `images`.
    """
    images = _check_images(images)
    severity = _check_severity(severity)
    if kind not in _APPLY:
        raise DLCoverageError(
            f"expected `kind` to be one of {AUGMENTATIONS}; received kind={kind!r}"
        )
    if len(images) == 0:
        return images.copy()
    rng = np.random.default_rng([seed, AUGMENTATIONS.index(kind), severity])
    return _APPLY[kind](images, severity, rng)


def augment_mixed(images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Applies one augmentation to every image, each at a severity drawn from 1 to 5.

    This is how a test suite of the study is made: a mix of mild and strong changes.

    Args:
        images: `(n, height, width, 3)` uint8 RGB images; left unchanged.
        kind: one of `AUGMENTATIONS`.
        seed: fixes both the severities and the augmentations.

    Returns:
        A new uint8 array of the shape of `images`.
    """
    images = _check_images(images)
    severities = np.random.default_rng([seed, len(AUGMENTATIONS)]).choice(
        SEVERITIES, size=len(images)
    )
    out = np.empty_like(images)
    for severity in SEVERITIES:
        chosen = severities == severity
        out[chosen] = augment(images[chosen], kind, int(severity), seed)
    return out


def augmented_copies(images: np.ndarray, seed: int) -> np.ndarray:
    """Makes one augmented copy of each image, for retraining.

    The augmentations take turns (image i gets `AUGMENTATIONS[i % 6]`), so every kind
    is equally represented, each at a severity drawn from 1 to 5.

    Args:
        images: `(n, height, width, 3)` uint8 RGB images; left unchanged.
        seed: fixes the result.

    Returns:
        A new uint8 array of the shape of `images`.
    """
    images = _check_images(images)
    out = np.empty_like(images)
    turns = np.arange(len(images)) % len(AUGMENTATIONS)
    for index, kind in enumerate(AUGMENTATIONS):
        chosen = turns == index
        out[chosen] = augment_mixed(images[chosen], kind, seed)
    return out
