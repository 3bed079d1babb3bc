//! Training the pose models.
