"""mtsnn.hw_model: the chip side, numpy + standard library only (never imports torch).

Integer neuron semantics (the one definition), integer network records, the core description
format, the exact integer reference, targets, mapper, simulator and reports.
"""
