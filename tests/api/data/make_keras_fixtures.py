"""Writes keras_mlp.onnx, keras_cnn.onnx and keras_expected.npz (inputs and Keras's outputs)
beside this file: two small Keras models converted by tf2onnx, for tests/api/test_import.py.

Run it where TensorFlow and tf2onnx install (they need not be in Destiny's environment):

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx onnx
    /tmp/tfenv/bin/python tests/api/data/make_keras_fixtures.py

(Made with TensorFlow 2.19, Keras 3, tf2onnx 1.17, opset 13.)
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def models():
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(3)
    mlp = keras.Sequential([keras.Input((20,), name="items"),
                            keras.layers.Dense(16, activation="relu", bias_initializer="random_normal", name="hidden1"),
                            keras.layers.Dropout(0.3, name="dropout"),
                            keras.layers.Dense(8, activation="tanh", bias_initializer="random_normal", name="hidden2"),
                            keras.layers.Dense(5, activation="softmax", bias_initializer="random_normal",
                                               name="scores")])
    cnn = keras.Sequential([keras.Input((8, 6, 2), name="image"),  # NHWC, as Keras stores images
                            keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                                bias_initializer="random_normal", name="conv"),
                            keras.layers.MaxPooling2D(2, name="pool"),
                            keras.layers.Flatten(name="flatten"),
                            keras.layers.Dense(3, activation="softmax", bias_initializer="random_normal",
                                               name="classes")])
    return {"mlp": mlp, "cnn": cnn}


def convert(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=model.inputs[0].name),)
    function = tf.function(lambda x: {"output": model(x, training=False)})  # from_keras trips over Keras 3 names
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=13)
    path.write_bytes(proto.SerializeToString())


def main() -> None:
    here = Path(__file__).resolve().parent
    rng = np.random.default_rng(0)
    arrays = {}
    for name, model in models().items():
        convert(model, here / f"keras_{name}.onnx")
        x = rng.random((4, *model.input_shape[1:]), dtype=np.float32)
        if name == "mlp":
            x = (x < 0.3).astype(np.float32)  # multi-hot rows
        arrays[f"{name}_x"] = x
        arrays[f"{name}_y"] = model(x, training=False).numpy()
    np.savez(here / "keras_expected.npz", **arrays)


if __name__ == "__main__":
    main()
