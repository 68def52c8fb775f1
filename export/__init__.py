"""mtsnn.export: checkpoint -> integer network -> core description + ONNX; integer validation."""
