"""ResNet32 for CIFAR-10, built with Keras 3.

ResNet v1 for CIFAR (He, Zhang, Ren and Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016, section 4.2): a 3x3 convolution, then three stages of `n`
residual blocks with 16, 32 and 64 filters, global average pooling and a 10-way
softmax classifier; depth 6n + 2, so n = 5 gives 32 weight layers and about 0.47
million parameters. The first block of stages 2 and 3 halves the spatial size with a
stride of 2 and projects its shortcut with a 1x1 convolution.

Every ReLU is its own `keras.layers.ReLU` layer, after each BatchNormalization and
after each Add, so that the coverage default layer set (post-activation outputs) sees
every activation of the network exactly once. The model takes raw pixel values in
[0, 255]; it rescales them itself, so test suites and augmentations stay in image units.
"""

from __future__ import annotations

import keras
from keras import layers

STAGE_FILTERS = (16, 32, 64)
BLOCKS_PER_STAGE = 5
NUM_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)

# Weight decay of the CIFAR experiments of He et al. (2016).
WEIGHT_DECAY = 1e-4


def _conv(filters: int, kernel_size: int, strides: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(WEIGHT_DECAY),
        name=name,
    )


def _residual_block(x: keras.KerasTensor, filters: int, strides: int, name: str):
    shortcut = x
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)

    # A block that changes the shape projects its shortcut (option B of He et al.).
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_shortcut")(shortcut)

    x = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(x)


def build_resnet32(
    blocks_per_stage: int = BLOCKS_PER_STAGE, num_classes: int = NUM_CLASSES
) -> keras.Model:
    """Builds an untrained ResNet v1 for 32x32 RGB images.

    Args:
        blocks_per_stage: `n`, residual blocks per stage; the depth is `6n + 2` (5 for
            ResNet32).
        num_classes: outputs of the softmax classifier.

    Returns:
        A functional `keras.Model` mapping `(batch, 32, 32, 3)` pixel values in [0, 255]
        to `(batch, num_classes)` class probabilities. Its layers are named
        `stage{s}_block{b}_{part}`; the classifier is `classifier` and its input, the
        global average pool, is `pool`.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = _conv(STAGE_FILTERS[0], 3, 1, "stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)

    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _residual_block(x, filters, strides, f"stage{stage}_block{block}")

    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", kernel_initializer="he_normal", name="classifier"
    )(x)
    depth = 6 * blocks_per_stage + 2
    return keras.Model(inputs, outputs, name=f"resnet{depth}")
