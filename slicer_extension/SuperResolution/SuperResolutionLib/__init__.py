"""Everything of the Super-resolution module that is not GUI.

Standard library and Slicer only (safe to import when Slicer starts): ``protocol`` (worker line protocol),
``process`` (the worker subprocess), ``models`` (the model menu, read from the engine's registry file),
``dependencies`` (index packages on first use), ``job`` (one run: scene -> worker -> scene), ``nodes`` (MRML nodes
<-> volumes; imports rmisr_monai when called). Need the engine (``rmisr_monai`` in the module folder) and its
requirements: ``geometry`` (node geometry <-> arrays, ROI), ``quality`` (quality table; torch only when scoring),
``worker`` (the worker process's program; torch).
"""
