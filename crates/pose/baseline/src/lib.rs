//! Baselines every model must beat: the mean training pose, and ridge regression from the
//! flattened CSI frame (A·S·P features) to the keypoint coordinates.
//!
//! Both fit on a set of row indices of a [`Samples`] source (a [`PackedDataset`] or an
//! in-memory [`Table`]) and predict flat `[rows, label_len]` `f32` keypoints.

pub mod linalg;
pub mod ridge;

use csipose_dataset::PackedDataset;
pub use ridge::{Lambda, Ridge, DEFAULT_ALPHAS};

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot fit a baseline on an empty training set")]
    NoTrainingRows,
    #[error("row index {index} is out of range (the data has {len} rows)")]
    BadIndex { index: usize, len: usize },
    #[error("ridge: {0}")]
    Ridge(String),
}

pub type Result<T> = std::result::Result<T, BaselineError>;

/// Rows of (CSI features, keypoints, group) that baselines fit on.
pub trait Samples: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Features per row.
    fn x_len(&self) -> usize;
    /// Label values per row.
    fn y_len(&self) -> usize;
    fn x(&self, i: usize) -> &[f32];
    fn y(&self, i: usize) -> &[f32];
    /// The group a row belongs to (for MM-Fi the subject); held-out validation inside a fit
    /// keeps groups apart.
    fn group(&self, _i: usize) -> i64 {
        0
    }
}

impl Samples for PackedDataset {
    fn len(&self) -> usize {
        PackedDataset::len(self)
    }
    fn x_len(&self) -> usize {
        self.frame_len()
    }
    fn y_len(&self) -> usize {
        self.label_len()
    }
    fn x(&self, i: usize) -> &[f32] {
        PackedDataset::x(self, i)
    }
    fn y(&self, i: usize) -> &[f32] {
        PackedDataset::y(self, i)
    }
    fn group(&self, i: usize) -> i64 {
        self.meta(i).subject as i64
    }
}

/// Rows held in memory (tests, synthetic data).
pub struct Table {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub x_len: usize,
    pub y_len: usize,
    /// One group per row, or empty for "all in group 0".
    pub groups: Vec<i64>,
}

impl Samples for Table {
    fn len(&self) -> usize {
        self.y.len() / self.y_len
    }
    fn x_len(&self) -> usize {
        self.x_len
    }
    fn y_len(&self) -> usize {
        self.y_len
    }
    fn x(&self, i: usize) -> &[f32] {
        &self.x[i * self.x_len..(i + 1) * self.x_len]
    }
    fn y(&self, i: usize) -> &[f32] {
        &self.y[i * self.y_len..(i + 1) * self.y_len]
    }
    fn group(&self, i: usize) -> i64 {
        self.groups.get(i).copied().unwrap_or(0)
    }
}

fn check_indices(data: &dyn Samples, idx: &[usize]) -> Result<()> {
    match idx.iter().find(|&&i| i >= data.len()) {
        Some(&index) => Err(BaselineError::BadIndex {
            index,
            len: data.len(),
        }),
        None => Ok(()),
    }
}

/// Predicts the mean training pose for every frame.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanPose {
    /// The mean label, `label_len` values.
    pub mean: Vec<f32>,
}

impl MeanPose {
    pub fn fit(data: &dyn Samples, train: &[usize]) -> Result<MeanPose> {
        if train.is_empty() {
            return Err(BaselineError::NoTrainingRows);
        }
        check_indices(data, train)?;
        let mut sum = vec![0.0f64; data.y_len()];
        for &i in train {
            for (s, v) in sum.iter_mut().zip(data.y(i)) {
                *s += *v as f64;
            }
        }
        let n = train.len() as f64;
        Ok(MeanPose {
            mean: sum.into_iter().map(|s| (s / n) as f32).collect(),
        })
    }

    /// `[idx.len(), label_len]`: the mean pose repeated.
    pub fn predict(&self, idx: &[usize]) -> Vec<f32> {
        self.mean.repeat(idx.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pose_by_hand() {
        let t = Table {
            x: vec![0.0; 3],
            y: vec![1.0, 2.0, 3.0, 5.0, 10.0, -4.0],
            x_len: 1,
            y_len: 2,
            groups: vec![],
        };
        let m = MeanPose::fit(&t, &[0, 1]).unwrap();
        assert_eq!(m.mean, vec![2.0, 3.5]);
        let m = MeanPose::fit(&t, &[1, 2]).unwrap();
        assert_eq!(m.mean, vec![6.5, 0.5]);
        assert_eq!(m.predict(&[0, 2]), vec![6.5, 0.5, 6.5, 0.5]);
        assert!(matches!(
            MeanPose::fit(&t, &[]),
            Err(BaselineError::NoTrainingRows)
        ));
        assert!(matches!(
            MeanPose::fit(&t, &[3]),
            Err(BaselineError::BadIndex { index: 3, len: 3 })
        ));
    }
}
