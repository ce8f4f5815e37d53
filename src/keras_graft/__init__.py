"""keras-graft: TensorFlow operations as first-class citizens of Keras 3 models.

`import keras_graft`, then TF ops work on Keras tensors, with TensorFlow's own
shapes and dtypes, and models that use them save and load in safe mode.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((10,))
>>> model = keras.Model(x, tf.clip_by_value(x, -1.0, 1.0))
"""

from keras_graft import _compat, errors
from keras_graft import patches as _patches
from keras_graft.core import safety
from keras_graft.core.op_layer import Op, TFOp, op
from keras_graft.core.safety import allow, allow_process_wide, revoke_process_wide
from keras_graft.errors import (
    KerasGraftError,
    MalformedModelFileError,
    OpTraceError,
    UnsafeOpError,
    UnstorableArgumentError,
)
from keras_graft.inspection import inspect
from keras_graft.inspection.export import export
from keras_graft.keras2 import loading as _keras2_loading
from keras_graft.layers.context import LayerContext
from keras_graft.layers.decorators import layer, loss, metric

__version__ = "0.1.0"

_patches.install()
_keras2_loading.install()
_compat.stop_unresolvable_functional_nodes()

__all__ = [
    "KerasGraftError",
    "LayerContext",
    "MalformedModelFileError",
    "Op",
    "OpTraceError",
    "TFOp",
    "UnsafeOpError",
    "UnstorableArgumentError",
    "allow",
    "allow_process_wide",
    "errors",
    "export",
    "inspect",
    "layer",
    "loss",
    "metric",
    "op",
    "revoke_process_wide",
    "safety",
]
