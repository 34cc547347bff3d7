"""Training of swap models: facesets, DF/LIAE autoencoders, losses, augmentation, the trainer, checkpoints.

Modules: ``faceset`` (on-disk format, writer, loader; needs only numpy/OpenCV), ``config`` (architectures,
presets, recipe), ``blocks`` / ``archs`` (PyTorch models), ``losses``, ``augment`` / ``data`` (batches),
``checkpoint`` (safetensors + JSON), ``trainer``, ``preview`` (grids, loss log and plot), ``command`` (the
``train`` subcommand), ``sample_faces`` (real faces shipped in installed packages, for tests and benchmarks).
Everything but ``faceset`` and ``config`` needs the ``train`` extra (torch, safetensors, matplotlib).
"""
