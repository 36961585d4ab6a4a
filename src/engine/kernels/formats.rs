//! The 32-value block formats of GGUF files (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1):
//! their sizes and how a block's bytes hold its values.

/// Values per block in every format.
pub(super) const QK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Format {
    /// f16 scale, 32 × i8.
    Q8_0,
    /// f16 scale, 32 high bits, 16 bytes of nibbles; value = 5 bits − 16.
    Q5_0,
    /// f16 scale, f16 minimum, 32 high bits, 16 bytes of nibbles; value =
    /// scale · 5 bits + minimum.
    Q5_1,
    /// f16 scale, 16 bytes of nibbles; value = nibble − 8.
    Q4_0,
    /// f16 scale, f16 minimum, 16 bytes of nibbles; value = scale · nibble
    /// + minimum.
    Q4_1,
}

impl Format {
    pub(super) fn block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => 34,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
        }
    }

    /// Whether blocks carry a minimum after the scale.
    pub(super) fn has_min(self) -> bool {
        matches!(self, Format::Q5_1 | Format::Q4_1)
    }

    /// The 32 values of one block, without the scale.
    pub(super) fn values(self, block: &[u8]) -> [i8; QK] {
        let mut v = [0i8; QK];
        match self {
            Format::Q8_0 => {
                for (o, &b) in v.iter_mut().zip(&block[2..34]) {
                    *o = b as i8;
                }
            }
            Format::Q5_0 | Format::Q5_1 => {
                let (at, offset) = match self {
                    Format::Q5_0 => (2, 16),
                    _ => (4, 0),
                };
                let qh =
                    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
                for j in 0..QK / 2 {
                    let q = block[at + 4 + j];
                    let lo = (q & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
                    let hi = (q >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                    v[j] = lo as i8 - offset;
                    v[j + QK / 2] = hi as i8 - offset;
                }
            }
            Format::Q4_0 | Format::Q4_1 => {
                let (at, offset) = match self {
                    Format::Q4_0 => (2, 8),
                    _ => (4, 0),
                };
                for j in 0..QK / 2 {
                    let q = block[at + j];
                    v[j] = (q & 0x0f) as i8 - offset;
                    v[j + QK / 2] = (q >> 4) as i8 - offset;
                }
            }
        }
        v
    }
}

/// The f16 at the start of `b`, widened: the scales and minimums of every
/// block format are stored so.
pub(super) fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Q5_0 bit layout: the fifth bit of value j is bit j of `qh`, the
    /// nibbles of byte j are values j and j + 16.
    #[test]
    fn q5_0_values_follow_the_layout() {
        let mut block = [0u8; 22];
        block[2..6].copy_from_slice(&(1u32 << 3 | 1 << 20).to_le_bytes());
        block[6 + 3] = 0x2f; // value 3: nibble 15, value 19: nibble 2
        block[6 + 4] = 0x70; // value 4: nibble 0, value 20: nibble 7
        let v = Format::Q5_0.values(&block);
        assert_eq!(v[3], 15 + 16 - 16);
        assert_eq!(v[19], 2 - 16);
        assert_eq!(v[4], -16);
        assert_eq!(v[20], 7 + 16 - 16);
        assert_eq!(v[0], -16);
    }
}
