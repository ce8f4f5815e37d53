"""`python -m keras_graft demo`, the same as `keras-graft demo`."""

import sys

from keras_graft.cli import main

sys.exit(main())
