//! Sorting f64 values and u64 keys: comparison sort for small inputs, LSD radix sort for large.

/// Below this many values `sort_f64` uses a comparison sort.
const RADIX_F64_FROM: usize = 1 << 14;
/// Below this many keys `radix_sort_u64` uses a comparison sort.
const RADIX_U64_FROM: usize = 1 << 12;

/// Sorts values ascending in `f64::total_cmp` order (so -0.0 sorts before 0.0, and NaN with
/// the sign bit clear sorts last). Large inputs use an LSD radix sort on `order_key`s.
pub fn sort_f64(values: &mut [f64]) {
    if values.len() < RADIX_F64_FROM {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
    radix_sort_u64(&mut keys);
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_order_key(k);
    }
}

/// Sorts u64 keys ascending: an LSD radix sort, 16 bits per pass, skipping a pass whose digit is
/// the same for every key; small inputs use a comparison sort.
pub fn radix_sort_u64(keys: &mut Vec<u64>) {
    if keys.len() < RADIX_U64_FROM {
        keys.sort_unstable();
        return;
    }
    let mut buf = vec![0u64; keys.len()];
    let mut counts = vec![0usize; 1 << 16];
    for shift in [0u32, 16, 32, 48] {
        counts.fill(0);
        for k in keys.iter() {
            counts[((k >> shift) & 0xFFFF) as usize] += 1;
        }
        if counts.contains(&keys.len()) {
            continue; // every key has the same digit here
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = offset;
            offset += n;
        }
        for k in keys.iter() {
            let digit = ((k >> shift) & 0xFFFF) as usize;
            buf[counts[digit]] = *k;
            counts[digit] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

/// Maps f64 to u64 so that unsigned order equals `f64::total_cmp` order.
pub fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// The inverse of `order_key`.
pub fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_orders_like_total_cmp_with_signed_zeros_and_extremes() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut values: Vec<f64> = (0..50_000)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                match i % 7 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => v * 1e300,
                    3 => v * 1e-300,
                    4 => f64::NEG_INFINITY,
                    _ => v,
                }
            })
            .collect();
        let mut expected = values.clone();
        expected.sort_unstable_by(f64::total_cmp);
        sort_f64(&mut values);
        assert!(values.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn order_key_round_trips() {
        for v in [
            0.0,
            -0.0,
            1.5,
            -1.5,
            f64::MIN,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(from_order_key(order_key(v)).to_bits(), v.to_bits());
        }
        assert!(order_key(-0.0) < order_key(0.0));
        assert!(order_key(-1.0) < order_key(-0.5));
    }
}
