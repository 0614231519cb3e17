"""Plain-PyTorch attention layers (no Detectron2 config): criss-cross attention, RCCA, non-local."""
