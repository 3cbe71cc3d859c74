"""Vision engines: what the machine can detect in an image by itself."""
