//! MM-Fi splits: protocols, random (numpy legacy MT19937 permutation), cross-subject, cross-scene, manual.
