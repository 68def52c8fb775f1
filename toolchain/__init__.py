"""mtsnn.toolchain: quantization-aware training of MT-SNNs (torch + brevitas)."""
