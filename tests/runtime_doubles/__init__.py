"""Test doubles of runtimes for the gate's tests (tests/test_gate.py): no real runtime answers NaN or
times like a machine whose load flips on demand, so these wrap the real onnxruntime runner and change
what it returns. Used as a target's runtime by dotted name ("runtime_doubles.nan_outputs"), tests/ on
PYTHONPATH."""
