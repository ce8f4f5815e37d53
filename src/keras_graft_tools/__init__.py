"""The `keras-graft` command and its tools; they import the library, never the reverse."""
