"""The ``diemcau`` command (``diemcau.cli``). The top of the import graph: it imports
signaling, recorder, loadtest and bench; none of them imports it
(tests/unit/test_import_layers.py)."""
