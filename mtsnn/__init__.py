"""mtsnn: a hardware-oriented deployment toolchain for multi-threshold spiking neural networks."""

__version__ = "0.2.0"
