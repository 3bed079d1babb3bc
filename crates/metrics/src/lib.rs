//! Pose metrics: torso-PCK@k and its curve, per-joint PCK, bounding-box PCK, MPJPE and PA-MPJPE.
