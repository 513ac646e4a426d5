"""optibridge backend: Intel OpenVINO (runs artifacts on CPU/GPU/NPU; IR conversion and NNCF to come)."""
