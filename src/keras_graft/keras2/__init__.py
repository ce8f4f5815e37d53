"""Keras 2 model files in Keras 3: loading, config translation and conversion.

After `import keras_graft`, `keras.models.load_model("old.h5")` loads Keras 2
`.h5` files whose models called TF ops on Keras tensors (`TFOpLambda` and
`SlicingOpLambda` layers), in safe mode, as keras-graft op layers.

>>> import keras, keras_graft
>>> from keras_graft import keras2
>>> config, fixes = keras2.loading.translate(
...     {"class_name": "DepthwiseConv2D", "config": {"kernel_size": 3, "groups": 1}})
>>> keras.layers.DepthwiseConv2D.from_config(config["config"]).kernel_size
(3, 3)
"""

from keras_graft.keras2 import loading

__all__ = ["loading"]
