//! A minimal complex number for CSI values (no external numeric crate needed).

/// One complex CSI value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Complex {
    pub re: f64,
    pub im: f64,
}

impl Complex {
    pub const ZERO: Complex = Complex { re: 0.0, im: 0.0 };
    pub fn new(re: f64, im: f64) -> Self {
        Complex { re, im }
    }
    /// |z|
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    /// |z|²
    pub fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
    pub fn scale(self, k: f64) -> Self {
        Complex::new(self.re * k, self.im * k)
    }
}
