"""Keras 2 model files in Keras 3: loading, config translation and conversion.

After `import keras_graft`, `keras.models.load_model("old.h5")` loads Keras 2
`.h5` files whose models called TF ops on Keras tensors (`TFOpLambda` and
`SlicingOpLambda` layers), in safe mode, as keras-graft op layers.

>>> import keras, keras_graft
>>> from keras_graft import keras2
>>> keras2.loading.translate({"class_name": "Dense", "config": {"units": 2}})["class_name"]
'Dense'
"""

from keras_graft.keras2 import loading

__all__ = ["loading"]
