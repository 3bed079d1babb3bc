//! Simulated radios: the subcarrier grid, carrier frequency, antenna count and packet rate
//! of each hardware profile, and the [`HardwareProfile`] recorded in dataset.json.

use csipose_dataset::HardwareProfile;

/// Speed of light in m/s.
pub const C: f64 = 299_792_458.0;
/// OFDM subcarrier spacing of 802.11n, Hz.
pub const SUBCARRIER_SPACING: f64 = 312_500.0;

/// One simulated receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Radio {
    pub hardware: HardwareProfile,
    /// Centre frequency in Hz.
    pub center_hz: f64,
    /// Reported subcarriers as signed indices on the 312.5 kHz grid, in output order.
    pub subcarrier_index: Vec<i32>,
    /// Time between packets inside one frame, seconds.
    pub packet_interval_s: f64,
}

/// The hardware profiles `--profile` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// MM-Fi's Atheros receiver: 3 rx, 114 subcarriers (40 MHz, 5 GHz), 10 packets per frame.
    Mmfi,
    /// Intel 5300: 3 rx, 30 grouped subcarriers (20 MHz, 5 GHz), 10 packets per frame.
    Iwl5300,
    /// ESP32: 1 antenna, 64 subcarriers (20 MHz, 2.4 GHz), 10 packets per frame.
    Esp32,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Mmfi, Profile::Iwl5300, Profile::Esp32];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Mmfi => "mmfi",
            Profile::Iwl5300 => "iwl5300",
            Profile::Esp32 => "esp32",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn radio(self) -> Radio {
        match self {
            Profile::Mmfi => Radio {
                hardware: HardwareProfile::mmfi(),
                // Channel 60-64 bonded, 5.31 GHz; 114 data+pilot tones at -58..-2 and 2..58.
                center_hz: 5.31e9,
                subcarrier_index: (-58..=-2).chain(2..=58).collect(),
                packet_interval_s: 0.01,
            },
            Profile::Iwl5300 => Radio {
                hardware: HardwareProfile {
                    name: "iwl5300".into(),
                    antennas: 3,
                    subcarriers: 30,
                    packets: 10,
                    band: "5GHz".into(),
                    bandwidth_mhz: 20.0,
                },
                center_hz: 5.32e9,
                // The Intel CSI Tool's 30 groups for 20 MHz (grouping Ng = 2).
                subcarrier_index: vec![
                    -28, -26, -24, -22, -20, -18, -16, -14, -12, -10, -8, -6, -4, -2, -1, 1, 3, 5,
                    7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 28,
                ],
                packet_interval_s: 0.01,
            },
            Profile::Esp32 => Radio {
                hardware: HardwareProfile {
                    name: "esp32".into(),
                    antennas: 1,
                    subcarriers: 64,
                    packets: 10,
                    band: "2.4GHz".into(),
                    bandwidth_mhz: 20.0,
                },
                // Channel 6.
                center_hz: 2.437e9,
                subcarrier_index: (-32..32).collect(),
                packet_interval_s: 0.01,
            },
        }
    }
}

impl Radio {
    /// Wavelength at the centre frequency, metres.
    pub fn wavelength(&self) -> f64 {
        C / self.center_hz
    }
    /// Frequency of output subcarrier `k`, Hz.
    pub fn frequency(&self, k: usize) -> f64 {
        self.center_hz + self.subcarrier_index[k] as f64 * SUBCARRIER_SPACING
    }
    /// Lowest subcarrier index: the start of the uniform grid the channel is computed on.
    pub fn grid_start(&self) -> i32 {
        *self.subcarrier_index.iter().min().expect("subcarriers")
    }
    /// Length of the uniform grid from the lowest to the highest index.
    pub fn grid_len(&self) -> usize {
        (*self.subcarrier_index.iter().max().expect("subcarriers") - self.grid_start() + 1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_their_hardware() {
        for p in Profile::ALL {
            let r = p.radio();
            assert_eq!(r.subcarrier_index.len(), r.hardware.subcarriers, "{p:?}");
            assert_eq!(Profile::parse(p.name()), Some(p));
            let span = r.grid_len() as f64 * SUBCARRIER_SPACING / 1e6;
            assert!(span <= r.hardware.bandwidth_mhz, "{p:?} spans {span} MHz");
        }
        let m = Profile::Mmfi.radio();
        assert_eq!((m.hardware.antennas, m.hardware.packets), (3, 10));
        assert_eq!(Profile::Esp32.radio().hardware.antennas, 1);
    }
}
