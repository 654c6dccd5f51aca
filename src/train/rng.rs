//! The project's own deterministic pseudo-random number generator:
//! xoshiro256** seeded through splitmix64, plus the few sampling helpers the
//! synthetic generator and the fold splitter need (uniform floats and
//! integers, normal, Bernoulli, weighted choice, Fisher–Yates shuffle).
//!
//! It is implemented here rather than taken from a crate so that a given seed
//! produces the same stream forever, whatever dependency versions are used.
//! It is *not* cryptographically secure.

/// xoshiro256** generator (Blackman & Vigna), seeded from a `u64` via
/// splitmix64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

/// One splitmix64 step: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        // splitmix64 is a bijection of its counter, so four consecutive
        // outputs are never all zero; xoshiro's one forbidden state is
        // therefore unreachable.
        Rng { s }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift with rejection, so
    /// exactly unbiased). Returns 0 when `n == 0`, which has no valid value.
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let n = n as u64;
        let threshold = n.wrapping_neg() % n; // (2^64 - n) mod n
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// A standard normal draw (Box–Muller, cosine branch; one normal per two
    /// uniforms, no cached state).
    pub fn normal(&mut self) -> f64 {
        // 1 - U lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `true` with probability `p` (clamped to `[0, 1]`; NaN counts as 0).
    /// Always consumes exactly one draw.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Shuffles `xs` in place, uniformly (Fisher–Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// An index drawn with probability proportional to `weights[i]`.
    /// Negative, NaN and infinite weights count as 0. If no weight is
    /// positive the choice is uniform over all indices; an empty slice gives 0.
    pub fn choose_weighted(&mut self, weights: &[f64]) -> usize {
        let usable = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
        let total: f64 = weights.iter().map(|&w| usable(w)).sum();
        if !(total > 0.0 && total.is_finite()) {
            return self.below(weights.len());
        }
        let target = self.next_f64() * total;
        let mut acc = 0.0;
        let mut last_positive = 0;
        for (i, &w) in weights.iter().enumerate() {
            let w = usable(w);
            if w > 0.0 {
                acc += w;
                last_positive = i;
                if target < acc {
                    return i;
                }
            }
        }
        // Only reachable through floating-point rounding of the running sum.
        last_positive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 100_000;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.normal().to_bits(), b.normal().to_bits());
        }
    }

    #[test]
    fn reference_values_are_stable() {
        // splitmix64 from 0: first output is the well-known 0xE220A8397B1DCDAF.
        let mut sm = 0u64;
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
        // Pin the xoshiro256** stream so an accidental change is caught.
        let mut r = Rng {
            s: [1, 2, 3, 4], // reference state from the xoshiro authors' test vectors
        };
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240, 1215971899390074240]);
        // Seeded stream, cross-checked against an independent Python transcription.
        let mut r = Rng::new(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![11091344671253066420, 13793997310169335082, 1900383378846508768]);
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(2);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        assert!(xs.iter().zip(&ys).filter(|(x, y)| x == y).count() == 0);
    }

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        (m, v)
    }

    #[test]
    fn uniform_moments() {
        let mut r = Rng::new(123);
        let xs: Vec<f64> = (0..N).map(|_| r.next_f64()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let (m, v) = mean_var(&xs);
        assert!((m - 0.5).abs() < 0.005, "mean {m}");
        assert!((v - 1.0 / 12.0).abs() < 0.002, "var {v}");
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(321);
        let xs: Vec<f64> = (0..N).map(|_| r.normal()).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let (m, v) = mean_var(&xs);
        assert!(m.abs() < 0.02, "mean {m}");
        assert!((v - 1.0).abs() < 0.02, "var {v}");
        let beyond_2sd = xs.iter().filter(|x| x.abs() > 2.0).count() as f64 / N as f64;
        assert!((beyond_2sd - 0.0455).abs() < 0.005, "tail {beyond_2sd}");
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(9);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[r.below(7)] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn bernoulli_rate_and_edges() {
        let mut r = Rng::new(5);
        let hits = (0..N).filter(|_| r.bernoulli(0.3)).count() as f64 / N as f64;
        assert!((hits - 0.3).abs() < 0.01, "{hits}");
        assert!(!(0..1000).any(|_| r.bernoulli(0.0)));
        assert!((0..1000).all(|_| r.bernoulli(1.0)));
        assert!(!(0..1000).any(|_| r.bernoulli(f64::NAN)));
    }

    #[test]
    fn shuffle_is_a_permutation_and_deterministic() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        Rng::new(77).shuffle(&mut a);
        Rng::new(77).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        Rng::new(1).shuffle(&mut empty);
    }

    #[test]
    fn choose_weighted_follows_weights() {
        let mut r = Rng::new(11);
        let w = [1.0, 0.0, 3.0, -2.0, f64::NAN];
        let mut counts = [0usize; 5];
        for _ in 0..40_000 {
            counts[r.choose_weighted(&w)] += 1;
        }
        assert_eq!(counts[1] + counts[3] + counts[4], 0);
        let frac = counts[2] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.01, "{counts:?}");
        assert_eq!(r.choose_weighted(&[]), 0);
        assert!(r.choose_weighted(&[0.0, 0.0, 0.0]) < 3);
    }
}
