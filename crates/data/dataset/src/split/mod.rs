//! MM-Fi splits: protocols (which actions), and per action which subjects train and which
//! validate: `random` (numpy's legacy MT19937 permutation, bit-exact), `cross-subject`,
//! `cross-scene` and `manual` (a JSON file). [`Split::select`] turns a split into frame
//! indices of a packed dataset.
//!
//! The rules follow MM-Fi's `mmfi_lib/mmfi.py` (`decode_config`):
//! - `random`: for the action at position `p` of the protocol's action list (from 0),
//!   `np.random.seed(seed + p); idx = np.random.permutation(40)`; the first
//!   `floor(ratio * 40)` entries of `idx` are the train subjects (subject = entry + 1).
//! - `cross-subject`: validation S05, S10, ..., S40 (every fifth subject), the rest train.
//! - `cross-scene`: validation S31-S40 (environment E04), train S01-S30.
//! - `manual`: a JSON file (see [`ManualConfig`]).

pub mod mt19937;

use crate::packed::{FrameMeta, PackedDataset};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Subjects in MM-Fi (S01..S40; S01-S10 are E01, S11-S20 E02, S21-S30 E03, S31-S40 E04).
pub const SUBJECTS: i32 = 40;
/// Actions in MM-Fi (A01..A27).
pub const ACTIONS: i32 = 27;

/// The environment (1..4) a subject was recorded in.
pub fn environment_of(subject: i32) -> i32 {
    (subject - 1) / 10 + 1
}

/// The actions (1-based numbers) of an MM-Fi protocol, in MM-Fi's order.
/// Protocol 1 (daily actions): A02-A05, A13, A14, A17-A23, A27; protocol 2 (rehabilitation):
/// A01, A06-A12, A15, A16, A24-A26; protocol 3: all 27.
pub fn protocol_actions(protocol: u8) -> Result<Vec<i32>, SplitError> {
    match protocol {
        1 => Ok(vec![2, 3, 4, 5, 13, 14, 17, 18, 19, 20, 21, 22, 23, 27]),
        2 => Ok(vec![1, 6, 7, 8, 9, 10, 11, 12, 15, 16, 24, 25, 26]),
        3 => Ok((1..=ACTIONS).collect()),
        p => Err(SplitError::Invalid(format!(
            "protocol {p} does not exist (use 1, 2 or 3)"
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
}

/// How subjects are divided.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitKind {
    /// numpy-legacy random permutation per action; `ratio` of the 40 subjects train.
    Random {
        seed: u32,
        ratio: f64,
    },
    CrossSubject,
    CrossScene,
    /// Subjects and actions from a JSON file.
    Manual(PathBuf),
}

impl SplitKind {
    pub fn name(&self) -> &'static str {
        match self {
            SplitKind::Random { .. } => "random",
            SplitKind::CrossSubject => "cross-subject",
            SplitKind::CrossScene => "cross-scene",
            SplitKind::Manual(_) => "manual",
        }
    }
}

/// Train and validation subjects (sorted, 1-based) of one action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionSplit {
    pub train: Vec<i32>,
    pub val: Vec<i32>,
}

/// Which subset of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    Train,
    Val,
    All,
}

/// Frame indices of a dataset chosen by a split (each ascending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

impl Selection {
    /// The indices of one subset; `All` is train and val merged, ascending.
    pub fn subset(&self, s: Subset) -> Vec<usize> {
        match s {
            Subset::Train => self.train.clone(),
            Subset::Val => self.val.clone(),
            Subset::All => {
                let mut v: Vec<usize> = self.train.iter().chain(&self.val).copied().collect();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }
}

/// A split: for each action it covers, the train and validation subjects.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub kind: SplitKind,
    pub protocol: u8,
    /// Action number (1-based) -> subjects. Actions not in the map are in neither subset.
    pub actions: BTreeMap<i32, ActionSplit>,
}

impl Split {
    /// Builds a split. `protocol` chooses the actions (for `Manual` it is the default when
    /// the file lists no actions).
    pub fn new(kind: SplitKind, protocol: u8) -> Result<Split, SplitError> {
        let actions = protocol_actions(protocol)?;
        let map = match &kind {
            SplitKind::Random { seed, ratio } => {
                if !(0.0..=1.0).contains(ratio) {
                    return Err(SplitError::Invalid(format!(
                        "ratio {ratio} is outside [0, 1]"
                    )));
                }
                let last = *seed as u64 + actions.len() as u64 - 1;
                if last > u32::MAX as u64 {
                    return Err(SplitError::Invalid(format!(
                        "seed {seed} + action position reaches {last}; numpy seeds stop at 2^32 - 1"
                    )));
                }
                let n_train = (ratio * SUBJECTS as f64).floor() as usize;
                let mut map = BTreeMap::new();
                for (pos, &a) in actions.iter().enumerate() {
                    let perm = random_permutation(*seed, pos);
                    let mut train: Vec<i32> =
                        perm[..n_train].iter().map(|&i| i as i32 + 1).collect();
                    let mut val: Vec<i32> = perm[n_train..].iter().map(|&i| i as i32 + 1).collect();
                    train.sort_unstable();
                    val.sort_unstable();
                    map.insert(a, ActionSplit { train, val });
                }
                map
            }
            SplitKind::CrossSubject => {
                let (val, train): (Vec<i32>, Vec<i32>) = (1..=SUBJECTS).partition(|s| s % 5 == 0);
                actions
                    .iter()
                    .map(|&a| {
                        (
                            a,
                            ActionSplit {
                                train: train.clone(),
                                val: val.clone(),
                            },
                        )
                    })
                    .collect()
            }
            SplitKind::CrossScene => {
                let (val, train): (Vec<i32>, Vec<i32>) =
                    (1..=SUBJECTS).partition(|&s| environment_of(s) == 4);
                actions
                    .iter()
                    .map(|&a| {
                        (
                            a,
                            ActionSplit {
                                train: train.clone(),
                                val: val.clone(),
                            },
                        )
                    })
                    .collect()
            }
            SplitKind::Manual(path) => ManualConfig::load(path)?.to_map(path, &actions)?,
        };
        Ok(Split {
            kind,
            protocol,
            actions: map,
        })
    }

    /// Whether a frame of `subject` doing `action` belongs to the subset.
    pub fn contains(&self, subset: Subset, subject: i32, action: i32) -> bool {
        match self.actions.get(&action) {
            None => false,
            Some(a) => match subset {
                Subset::Train => a.train.binary_search(&subject).is_ok(),
                Subset::Val => a.val.binary_search(&subject).is_ok(),
                Subset::All => {
                    a.train.binary_search(&subject).is_ok() || a.val.binary_search(&subject).is_ok()
                }
            },
        }
    }

    /// Frame indices (ascending) whose (subject, action) is train and val. A frame of an action
    /// outside the split is in neither.
    pub fn select_meta<I: IntoIterator<Item = FrameMeta>>(&self, meta: I) -> Selection {
        let mut sel = Selection::default();
        for (i, m) in meta.into_iter().enumerate() {
            if self.contains(Subset::Train, m.subject, m.action) {
                sel.train.push(i);
            }
            if self.contains(Subset::Val, m.subject, m.action) {
                sel.val.push(i);
            }
        }
        sel
    }

    /// [`Split::select_meta`] over a packed dataset's `meta.npy`.
    pub fn select(&self, ds: &PackedDataset) -> Selection {
        self.select_meta((0..ds.len()).map(|i| ds.meta(i)))
    }

    /// JSON: `{"A02": {"train": ["S01", ...], "val": [...]}, ...}` (the layout of
    /// `random_split_reference.json`, without the permutation).
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for (a, s) in &self.actions {
            let names = |v: &[i32]| -> Vec<String> { v.iter().map(|s| subject_name(*s)).collect() };
            obj.insert(
                action_name(*a),
                serde_json::json!({"train": names(&s.train), "val": names(&s.val)}),
            );
        }
        serde_json::Value::Object(obj)
    }
}

/// The permutation numpy gives for the action at `position`: `np.random.seed(seed + position);
/// np.random.permutation(40)`. Panics if `seed + position` exceeds `u32::MAX` (numpy refuses
/// such seeds; [`Split::new`] reports it as an error).
pub fn random_permutation(seed: u32, position: usize) -> Vec<usize> {
    let rs = u32::try_from(seed as u64 + position as u64).expect("seed + position fits in u32");
    let mut rng = mt19937::Mt19937::new(rs);
    rng.permutation(SUBJECTS as usize)
}

pub fn subject_name(s: i32) -> String {
    format!("S{s:02}")
}
pub fn action_name(a: i32) -> String {
    format!("A{a:02}")
}

/// Parses `S07`, `s7` or `7` style names into a number in `1..=max`.
fn parse_id(v: &serde_json::Value, prefix: char, max: i32) -> Result<i32, String> {
    let n = match v {
        serde_json::Value::Number(n) => {
            n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?
        }
        serde_json::Value::String(s) => {
            let t = s.trim();
            let t = t
                .strip_prefix(prefix)
                .or_else(|| t.strip_prefix(prefix.to_ascii_lowercase()))
                .unwrap_or(t);
            t.parse::<i64>()
                .map_err(|_| format!("\"{s}\" is not a name like {prefix}01"))?
        }
        other => return Err(format!("{other} is not a name like {prefix}01")),
    };
    if n < 1 || n > max as i64 {
        return Err(format!(
            "{prefix}{n:02} is outside {prefix}01..{prefix}{max:02}"
        ));
    }
    Ok(n as i32)
}

/// One side of a manual split.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSide {
    /// Subjects: `"S01"` strings or numbers.
    pub subjects: Vec<serde_json::Value>,
    /// Actions: `"A02"` strings or numbers; absent = the protocol's actions.
    #[serde(default)]
    pub actions: Option<Vec<serde_json::Value>>,
}

/// The manual split file (JSON), MM-Fi's `manual_split` section:
/// ```json
/// {"train": {"subjects": ["S01", "S02"], "actions": ["A02", "A03"]},
///  "val":   {"subjects": ["S03"],        "actions": ["A02"]}}
/// ```
/// `train_dataset`/`val_dataset` are accepted as aliases of `train`/`val`. Frames of a train
/// action by a train subject train; frames of a val action by a val subject validate. A subject
/// in both lists for an action both lists share is an error (it would leak).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualConfig {
    #[serde(alias = "train_dataset")]
    pub train: ManualSide,
    #[serde(alias = "val_dataset")]
    pub val: ManualSide,
}

impl ManualConfig {
    pub fn load(path: &Path) -> Result<ManualConfig, SplitError> {
        let err = |msg: String| SplitError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "not a manual split (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })
    }

    fn to_map(
        &self,
        path: &Path,
        protocol_actions: &[i32],
    ) -> Result<BTreeMap<i32, ActionSplit>, SplitError> {
        let err = |msg: String| SplitError::Config {
            path: path.to_path_buf(),
            msg,
        };
        let side = |s: &ManualSide, name: &str| -> Result<(Vec<i32>, Vec<i32>), SplitError> {
            let subjects: BTreeSet<i32> = s
                .subjects
                .iter()
                .map(|v| parse_id(v, 'S', SUBJECTS))
                .collect::<Result<_, _>>()
                .map_err(|m| err(format!("{name}.subjects: {m}")))?;
            let actions: BTreeSet<i32> = match &s.actions {
                None => protocol_actions.iter().copied().collect(),
                Some(a) => a
                    .iter()
                    .map(|v| parse_id(v, 'A', ACTIONS))
                    .collect::<Result<_, _>>()
                    .map_err(|m| err(format!("{name}.actions: {m}")))?,
            };
            Ok((
                subjects.into_iter().collect(),
                actions.into_iter().collect(),
            ))
        };
        let (train_s, train_a) = side(&self.train, "train")?;
        let (val_s, val_a) = side(&self.val, "val")?;
        let mut map: BTreeMap<i32, ActionSplit> = BTreeMap::new();
        for &a in &train_a {
            map.entry(a).or_default().train = train_s.clone();
        }
        for &a in &val_a {
            map.entry(a).or_default().val = val_s.clone();
        }
        for (a, s) in &map {
            if let Some(x) = s.train.iter().find(|x| s.val.binary_search(x).is_ok()) {
                return Err(err(format!(
                    "subject {} is both train and val for action {}",
                    subject_name(*x),
                    action_name(*a)
                )));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> serde_json::Value {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../../shared/mmfi-mini/random_split_reference.json"
        );
        serde_json::from_str(&std::fs::read_to_string(p).expect("reference json")).unwrap()
    }

    fn parse_key(key: &str) -> (u8, u32, f64) {
        // "protocol1/seed=0/ratio=0.8"
        let parts: Vec<&str> = key.split('/').collect();
        let p = parts[0].trim_start_matches("protocol").parse().unwrap();
        let s = parts[1].trim_start_matches("seed=").parse().unwrap();
        let r = parts[2].trim_start_matches("ratio=").parse().unwrap();
        (p, s, r)
    }

    #[test]
    fn random_matches_every_reference_table() {
        let refj = reference();
        let tables = refj.as_object().unwrap();
        assert_eq!(tables.len(), 6);
        for (key, table) in tables {
            let (protocol, seed, ratio) = parse_key(key);
            let split = Split::new(SplitKind::Random { seed, ratio }, protocol).unwrap();
            let table = table.as_object().unwrap();
            let ours = split.to_json();
            assert_eq!(ours.as_object().unwrap().len(), table.len(), "{key}");
            let actions = protocol_actions(protocol).unwrap();
            for (pos, a) in actions.iter().enumerate() {
                let name = action_name(*a);
                let want = &table[&name];
                assert_eq!(ours[&name]["train"], want["train"], "{key} {name} train");
                assert_eq!(ours[&name]["val"], want["val"], "{key} {name} val");
                let perm: Vec<u64> = random_permutation(seed, pos)
                    .into_iter()
                    .map(|v| v as u64)
                    .collect();
                let want_perm: Vec<u64> = want["permutation"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                assert_eq!(perm, want_perm, "{key} {name} permutation");
            }
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol_actions(1).unwrap().len(), 14);
        assert_eq!(protocol_actions(2).unwrap().len(), 13);
        let mut all: Vec<i32> = protocol_actions(1).unwrap();
        all.extend(protocol_actions(2).unwrap());
        all.sort_unstable();
        assert_eq!(all, protocol_actions(3).unwrap());
        assert!(protocol_actions(4).is_err());
    }

    #[test]
    fn cross_subject_and_scene() {
        let cs = Split::new(SplitKind::CrossSubject, 2).unwrap();
        let a = &cs.actions[&1];
        assert_eq!(a.val, vec![5, 10, 15, 20, 25, 30, 35, 40]);
        assert_eq!(a.train.len(), 32);
        assert!(!cs.actions.contains_key(&2));
        let sc = Split::new(SplitKind::CrossScene, 3).unwrap();
        assert_eq!(sc.actions.len(), 27);
        assert_eq!(sc.actions[&27].val, (31..=40).collect::<Vec<_>>());
        assert_eq!(sc.actions[&27].train, (1..=30).collect::<Vec<_>>());
    }

    #[test]
    fn ratio_edges() {
        let s = Split::new(
            SplitKind::Random {
                seed: 9,
                ratio: 1.0,
            },
            1,
        )
        .unwrap();
        assert!(s
            .actions
            .values()
            .all(|a| a.train.len() == 40 && a.val.is_empty()));
        let s = Split::new(
            SplitKind::Random {
                seed: 9,
                ratio: 0.0,
            },
            1,
        )
        .unwrap();
        assert!(s.actions.values().all(|a| a.val.len() == 40));
        assert!(Split::new(
            SplitKind::Random {
                seed: 9,
                ratio: 1.5
            },
            1
        )
        .is_err());
    }

    #[test]
    fn select_frames() {
        let split = Split::new(SplitKind::CrossScene, 1).unwrap();
        let m = |subject, action| FrameMeta {
            environment: environment_of(subject),
            subject,
            action,
            frame: 1,
        };
        // A01 is not in protocol 1; A02 is.
        let meta = [m(1, 2), m(31, 2), m(1, 1), m(40, 27), m(30, 27)];
        let sel = split.select_meta(meta);
        assert_eq!(sel.train, vec![0, 4]);
        assert_eq!(sel.val, vec![1, 3]);
        assert_eq!(sel.subset(Subset::All), vec![0, 1, 3, 4]);
    }

    #[test]
    fn manual_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(
            &p,
            r#"{"train_dataset": {"subjects": ["S01", 2], "actions": ["A02", "A03"]},
                "val": {"subjects": ["S03"], "actions": ["A02"]}}"#,
        )
        .unwrap();
        let s = Split::new(SplitKind::Manual(p.clone()), 3).unwrap();
        assert_eq!(s.actions.len(), 2);
        assert_eq!(s.actions[&2].train, vec![1, 2]);
        assert_eq!(s.actions[&2].val, vec![3]);
        assert_eq!(s.actions[&3].val, Vec::<i32>::new());

        // No actions: the protocol's.
        std::fs::write(
            &p,
            r#"{"train": {"subjects": [1]}, "val": {"subjects": [2]}}"#,
        )
        .unwrap();
        let s = Split::new(SplitKind::Manual(p.clone()), 2).unwrap();
        assert_eq!(s.actions.len(), 13);

        for (text, want) in [
            (
                r#"{"train": {"subjects": ["S41"]}, "val": {"subjects": []}}"#,
                "train.subjects: S41 is outside",
            ),
            (
                r#"{"train": {"subjects": ["X1"]}, "val": {"subjects": []}}"#,
                "not a name like S01",
            ),
            (
                r#"{"train": {"subjects": [1]}, "val": {"subjects": [1]}}"#,
                "subject S01 is both train and val",
            ),
            (r#"{"train": {"subjects": [1]}}"#, "missing field `val`"),
            (
                r#"{"train": {"subjects": [1], "actions": ["A28"]}, "val": {"subjects": [2]}}"#,
                "train.actions: A28",
            ),
            ("{\"train\": ", "not a manual split"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Split::new(SplitKind::Manual(p.clone()), 1)
                .unwrap_err()
                .to_string();
            assert!(e.contains("m.json") && e.contains(want), "{text}: {e}");
        }
        let e = Split::new(SplitKind::Manual(dir.path().join("none.json")), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.json"), "{e}");
    }
}
