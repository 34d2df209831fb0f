"""Stage B math: weighted k-means, product quantization, MEC losses and quantizer training."""
