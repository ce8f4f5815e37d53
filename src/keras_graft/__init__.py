"""keras-graft: TensorFlow operations as first-class citizens of Keras 3 models.

`import keras_graft`, then TF ops work on Keras tensors, with TensorFlow's own
shapes and dtypes, and models that use them save and load in safe mode.

>>> import keras, tensorflow as tf, keras_graft
>>> x = keras.Input((10,))
>>> model = keras.Model(x, tf.clip_by_value(x, -1.0, 1.0))
"""

from keras_graft import _compat, errors
from keras_graft import composite_methods as _composite_methods
from keras_graft import dispatch as _dispatch
from keras_graft import higher_order as _higher_order
from keras_graft import printing as _printing
from keras_graft.authoring import LayerContext, layer, loss, metric
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
from keras_graft.op_layer import Op, TFOp
from keras_graft.registry import op
from keras_graft.safety import allow, allow_process_wide, revoke_process_wide

__version__ = "0.1.0"

_dispatch.install()
_composite_methods.install()
_higher_order.install()
_printing.install()
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
]
