"""`python -m keras_graft_tools demo`, the same as `keras-graft demo`.

`python -m` put the working directory first on `sys.path`; it leaves before
anything else is imported (Keras imports modules a model config names, see
`keras_graft_tools.command`). Prefer the `keras-graft` command: `python -m` also
found this package itself there.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from keras_graft_tools.command import main  # noqa: E402

sys.exit(main(working_directory_forgotten=True))
