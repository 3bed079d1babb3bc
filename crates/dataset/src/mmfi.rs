//! MM-Fi import: walks an extracted tree or the per-environment zip archives and writes a packed dataset.
