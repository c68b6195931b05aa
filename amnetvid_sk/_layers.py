"""The package's layers, lowest first: a module imports only from its own layer or a lower one.

A name is a module or a package (its modules included); the longest name that matches a module
decides. ``amnetvid_sk.pipelines`` is the top-level ``pipelines/`` folder (``pyproject.toml`` maps
it into the package): its ``__init__.py`` (recipes by name, steps by role, the evaluation
constants) imports only the error types, so the layers that need recipes' names may reach it.
``tests/test_layout.py`` checks the imports of every module against this table, and that the
table names only modules that exist.
"""

LAYERS = [
    # leaves: errors, constants, the parameter checks, precision, ids, metrics; recipes by name
    ["amnetvid_sk", "amnetvid_sk._lazy", "amnetvid_sk._layers", "amnetvid_sk.errors", "amnetvid_sk._validation",
     "amnetvid_sk.dask_backend", "amnetvid_sk.atomic_files", "amnetvid_sk.freed_memory",
     "amnetvid_sk.precision", "amnetvid_sk.video_ids", "amnetvid_sk.sampling_keys", "amnetvid_sk.metrics",
     "amnetvid_sk.uncertainty", "amnetvid_sk.pipelines"],
    # video files
    ["amnetvid_sk.video", "amnetvid_sk.testing.clips", "amnetvid_sk.testing"],
    # frame models and their renders
    ["amnetvid_sk.frame_models", "amnetvid_sk.render"],
    ["amnetvid_sk.store", "amnetvid_sk.testing.s3_server"],  # a local S3 server probes through store.location
    ["amnetvid_sk.labels", "amnetvid_sk.label_rows", "amnetvid_sk.label_text", "amnetvid_sk.left_out"],
    ["amnetvid_sk.extraction"],
    # scikit-learn steps that read the store
    ["amnetvid_sk.transformers", "amnetvid_sk.short_videos"],
    # torch networks
    ["amnetvid_sk.convlstm_recurrence", "amnetvid_sk.layers", "amnetvid_sk.networks", "amnetvid_sk.conv3d_network",
     "amnetvid_sk.compiling", "amnetvid_sk.callbacks", "amnetvid_sk.subsets"],
    # estimators
    ["amnetvid_sk.sequence_regressor", "amnetvid_sk.baseline"],
    ["amnetvid_sk.estimators", "amnetvid_sk.testing.synthetic"],
    ["amnetvid_sk.conv3d"],
    # evaluation
    ["amnetvid_sk.evaluate", "amnetvid_sk.tables", "amnetvid_sk.training_data", "amnetvid_sk.runs"],
    ["amnetvid_sk.report", "amnetvid_sk.predict", "amnetvid_sk.model_files", "amnetvid_sk.model_nodes",
     "amnetvid_sk.model_sources"],
    ["amnetvid_sk.demo", "amnetvid_sk.demo_clips", "amnetvid_sk.demo_labels"],
    ["amnetvid_sk.cli"],
]
