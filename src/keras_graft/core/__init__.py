"""The op-layer machinery: names, the safety rules, argument templates, inference, `TFOp`."""
