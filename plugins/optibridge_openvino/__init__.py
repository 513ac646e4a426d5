"""optibridge backend: Intel OpenVINO (runs artifacts on CPU/GPU/NPU; IR conversion, stateful decoders, NNCF quantization)."""
