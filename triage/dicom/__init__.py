"""Reading DICOM, one subpackage per stage of the flow: scan -> select -> pixels -> volume.

The modules here are what every stage shares: the constants (`tags`), the one raw header
walker (`raw_header`) and the loader's fast reader built on it (`fast_reader`), the one
value parser (`values`), resource limits, device groups, pydicom's notes, the stack
geometry (`geometry`) and the geometry verdict (`verdict`). A stage imports only these and
the stages before it (tests/test_import_graph.py); no ``__init__`` imports anything, so
importing one module costs only that module.
"""
