//! The MM-Fi train/validation split as commands and runs name it ([`SplitOptions`]: a kind by
//! name, the protocol, the random split's seed and ratio or a manual split's JSON file), built
//! into a [`Split`], described in one line ([`describe`]) and as JSON ([`split_json`]).

use anyhow::bail;
use csipose_dataset::split::{action_name, random_permutation, Split, SplitKind};
use std::path::PathBuf;

/// How subjects are divided into train and validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitChoice {
    /// numpy-legacy random permutation of the 40 subjects per action (MM-Fi's random_split).
    Random,
    /// Validation S05, S10, ..., S40.
    CrossSubject,
    /// Validation S31-S40 (environment E04).
    CrossScene,
    /// Subjects and actions from a JSON file.
    Manual,
}

impl SplitChoice {
    const ALL: [SplitChoice; 4] = [
        SplitChoice::Random,
        SplitChoice::CrossSubject,
        SplitChoice::CrossScene,
        SplitChoice::Manual,
    ];

    /// The name a run's `config.json` records (and the command line spells).
    pub fn name(self) -> &'static str {
        match self {
            SplitChoice::Random => "random",
            SplitChoice::CrossSubject => "cross-subject",
            SplitChoice::CrossScene => "cross-scene",
            SplitChoice::Manual => "manual",
        }
    }

    /// The kind named `name` (any case).
    pub fn from_name(name: &str) -> anyhow::Result<SplitChoice> {
        match Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
        {
            Some(k) => Ok(k),
            None => {
                bail!("unknown split {name:?} (one of random, cross-subject, cross-scene, manual)")
            }
        }
    }
}

/// A split as options: what `csipose train` records in a run and `eval` selects frames with.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitOptions {
    pub kind: SplitChoice,
    /// MM-Fi protocol: 1 = daily actions, 2 = rehabilitation actions, 3 = all 27.
    pub protocol: u8,
    /// Random split: seed of the first action (action at position p uses seed + p).
    pub seed: u32,
    /// Random split: fraction of the 40 subjects that train.
    pub ratio: f64,
    /// Manual split: the JSON file.
    pub config: Option<PathBuf>,
}

impl Default for SplitOptions {
    /// MM-Fi's random split of all 27 actions: seed 0, ratio 0.8.
    fn default() -> Self {
        SplitOptions {
            kind: SplitChoice::Random,
            protocol: 3,
            seed: 0,
            ratio: 0.8,
            config: None,
        }
    }
}

impl SplitOptions {
    /// Builds the split, checking that the options fit together.
    pub fn build(&self) -> anyhow::Result<Split> {
        let kind = match (self.kind, self.config.as_deref()) {
            (SplitChoice::Manual, Some(p)) => SplitKind::Manual(p.to_path_buf()),
            (SplitChoice::Manual, None) => bail!("--kind manual needs --config FILE"),
            (_, Some(_)) => bail!("--config only applies to the manual split"),
            (SplitChoice::Random, None) => {
                if !(0.0..=1.0).contains(&self.ratio) {
                    bail!("--ratio {} is outside [0, 1]", self.ratio);
                }
                SplitKind::Random {
                    seed: self.seed,
                    ratio: self.ratio,
                }
            }
            (SplitChoice::CrossSubject, None) => SplitKind::CrossSubject,
            (SplitChoice::CrossScene, None) => SplitKind::CrossScene,
        };
        Ok(Split::new(kind, self.protocol)?)
    }
}

/// The split as JSON: options plus, per action, train and val subjects (and, for the random
/// split, numpy's permutation), in the layout of `random_split_reference.json`.
pub fn split_json(split: &Split) -> serde_json::Value {
    let mut actions = split.to_json();
    let mut out = serde_json::json!({
        "protocol": split.protocol,
        "kind": split.kind.name(),
    });
    match &split.kind {
        SplitKind::Random { seed, ratio } => {
            out["seed"] = (*seed).into();
            out["ratio"] = (*ratio).into();
            let positions = csipose_dataset::split::protocol_actions(split.protocol)
                .expect("a built split has a valid protocol");
            for (pos, a) in positions.iter().enumerate() {
                actions[action_name(*a)]["permutation"] = random_permutation(*seed, pos).into();
            }
        }
        SplitKind::Manual(p) => out["config"] = p.display().to_string().into(),
        _ => {}
    }
    out["actions"] = actions;
    out
}

/// A one-line description, e.g. `random split (seed 0, ratio 0.8), protocol 1`.
pub fn describe(split: &Split) -> String {
    let what = match &split.kind {
        SplitKind::Random { seed, ratio } => format!("random split (seed {seed}, ratio {ratio})"),
        SplitKind::Manual(p) => format!("manual split ({})", p.display()),
        k => format!("{} split", k.name()),
    };
    format!("{what}, protocol {}", split.protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for k in SplitChoice::ALL {
            assert_eq!(SplitChoice::from_name(k.name()).unwrap(), k);
            assert_eq!(SplitChoice::from_name(&k.name().to_uppercase()).unwrap(), k);
        }
        let e = SplitChoice::from_name("diagonal").unwrap_err().to_string();
        assert!(e.contains("\"diagonal\""), "{e}");
    }

    #[test]
    fn options_that_do_not_fit_are_refused() {
        let manual = SplitOptions {
            kind: SplitChoice::Manual,
            ..SplitOptions::default()
        };
        assert!(manual.build().is_err());
        let ratio = SplitOptions {
            ratio: 1.5,
            ..SplitOptions::default()
        };
        assert!(ratio
            .build()
            .unwrap_err()
            .to_string()
            .contains("--ratio 1.5"));
        let d = describe(&SplitOptions::default().build().unwrap());
        assert_eq!(d, "random split (seed 0, ratio 0.8), protocol 3");
    }
}
