//! Products of an f32 matrix with the few rows of a decoding step, each
//! sum taken in one order whatever the number of rows.
//!
//! A decoding step of several independent sequences is one product with a
//! row per sequence, and each sequence's output must be the one it gets
//! alone, bit for bit. A general matrix product chooses its blocking, and
//! so its order of additions, from the shape: one row and eight rows do not
//! sum alike. Here every output is one dot product of a weight row and an
//! activation row, in a fixed number of partial sums folded in a fixed
//! order, and each weight row is read once for all the activation rows.

use super::cpu::{isa, Isa};

/// Products up to this many multiplications run on the calling thread:
/// waking the pool costs more than they do.
const SMALL: usize = 1 << 18;

/// `x · wᵀ` for `w` of `n` rows of `k` values and `x` of `x.len() / k` rows,
/// as `rows × n` values.
pub(super) fn product(w: &[f32], n: usize, k: usize, x: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), n * k);
    let m = x.len() / k;
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    let isa = isa();
    let dst = out.as_mut_ptr() as usize;
    let job = |cols: std::ops::Range<usize>| {
        for j in cols {
            let wj = &w[j * k..(j + 1) * k];
            for r in 0..m {
                let v = dot(isa, wj, &x[r * k..(r + 1) * k]);
                // SAFETY: each column is one job's alone, inside `out`,
                // which outlives the pool call.
                unsafe { *(dst as *mut f32).add(r * n + j) = v };
            }
        }
    };
    if m * n * k <= SMALL {
        job(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, job);
    }
    out
}

/// Σ aᵢ·bᵢ on the path `isa`.
#[inline(always)]
fn dot(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match isa {
        // SAFETY: `isa()` chose these paths only where the CPU has the
        // features; both slices have the same length.
        #[cfg(glot_x86)]
        Isa::Vnni => unsafe { x86::dot512(a, b) },
        #[cfg(glot_x86)]
        Isa::Avx2 => unsafe { x86::dot256(a, b) },
        _ => dot_plain(a, b),
    }
}

/// Σ aᵢ·bᵢ in 16 partial sums folded in halves, then the tail.
fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    const WIDTH: usize = 16;
    let mut acc = [0f32; WIDTH];
    let (ac, bc) = (a.chunks_exact(WIDTH), b.chunks_exact(WIDTH));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (a, b) in ac.zip(bc) {
        for l in 0..WIDTH {
            acc[l] += a[l] * b[l];
        }
    }
    fold(acc) + tail(at, bt)
}

/// The lanes of `acc` folded in halves: a fixed order of additions.
#[inline(always)]
fn fold<const N: usize>(mut acc: [f32; N]) -> f32 {
    let mut half = N / 2;
    while half > 0 {
        for l in 0..half {
            acc[l] += acc[l + half];
        }
        half /= 2;
    }
    acc[0]
}

#[inline(always)]
fn tail(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |s, (a, b)| s + a * b)
}

#[cfg(glot_x86)]
mod x86 {
    use std::arch::x86_64::*;

    /// Two chains of 16 partial sums (fused multiply-adds), added, folded.
    ///
    /// # Safety
    /// AVX-512F; `a` and `b` have the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len() / 32 * 32;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in (0..n).step_by(32) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
            s1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                s1,
            );
        }
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_add_ps(s0, s1));
        super::fold(lanes) + super::tail(&a[n..], &b[n..])
    }

    /// Two chains of 8 partial sums (fused multiply-adds), added, folded.
    ///
    /// # Safety
    /// AVX2 and FMA; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot256(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len() / 16 * 16;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..n).step_by(16) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(s0, s1));
        super::fold(lanes) + super::tail(&a[n..], &b[n..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::tests::random;

    /// Near the exact product, and each row the same bits alone as beside
    /// others, on the calling thread (small) and on the pool (large).
    #[test]
    fn products_are_the_matrix_product_and_each_row_the_same_alone() {
        for (n, k) in [(37, 96), (5, 200), (64, 16), (3, 7), (300, 1024)] {
            let w = random(n * k, 1);
            let x = random(6 * k, 2);
            let all = product(&w, n, k, &x);
            for r in 0..6 {
                let xr = &x[r * k..(r + 1) * k];
                let alone = product(&w, n, k, xr);
                assert_eq!(alone.as_slice(), &all[r * n..(r + 1) * n], "row {r}");
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|i| f64::from(w[j * k + i]) * f64::from(xr[i]))
                        .sum();
                    assert!((f64::from(alone[j]) - exact).abs() < 1e-3, "{n}×{k}");
                }
            }
        }
    }

    /// The vector paths this CPU has are near the plain one.
    #[test]
    fn vector_paths_are_near_the_plain_one() {
        let (a, b) = (random(1000, 3), random(1000, 4));
        let plain = dot_plain(&a, &b);
        for path in crate::engine::kernels::tests::vector_paths() {
            let v = dot(path, &a, &b);
            assert!((v - plain).abs() < 1e-3, "{path:?}: {v} vs {plain}");
        }
    }
}
