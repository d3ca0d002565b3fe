"""The volume: `loader.load_series` reads and checks a series' files, `assemble` sorts,
judges and stacks their frames into a `model.Volume` with its affine and verdict."""
