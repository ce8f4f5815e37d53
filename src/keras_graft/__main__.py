"""`python -m keras_graft demo`, the same as `keras-graft demo` (through its launcher)."""

import sys

import keras_graft_command

sys.exit(keras_graft_command.main())
