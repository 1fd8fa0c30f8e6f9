//! Distributions of Kolmogorov–Smirnov statistics, computed the way scipy 1.17 computes them
//! (Simard & L'Ecuyer's choice of algorithm by `n` and `x`): the finite-`n` two-sided
//! distribution `kstwo` (Durbin matrix, Pomeranz recursion, Pelz–Good, Smirnov's exact
//! one-sided sum) and the limiting Kolmogorov distribution `kstwobign`.
//!
//! References: Simard & L'Ecuyer, "Computing the Two-Sided Kolmogorov-Smirnov Distribution",
//! J. Stat. Softw. 39(11), 2011; Marsaglia, Tsang & Wang, J. Stat. Softw. 8(18), 2003;
//! Pomeranz, CACM 17(12), 1974; Pelz & Good, JRSS B 38(2), 1976; Birnbaum & Tingey, Ann. Math.
//! Statist. 22, 1951.

use std::f64::consts::PI;

use statrs::function::gamma::ln_gamma;

const SCALE_EXP: i32 = 128;

fn scale_up() -> f64 {
    2f64.powi(SCALE_EXP)
}

fn scale_down() -> f64 {
    2f64.powi(-SCALE_EXP)
}

/// Survival function of the limiting distribution of `sqrt(n) D_n` (scipy's `kstwobign.sf`,
/// `scipy.special.kolmogorov`).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= PI / (8.0 * 746.0f64).sqrt() {
        return 1.0;
    }
    if x <= 0.82 {
        let w = (2.0 * PI).sqrt() / x;
        let logu8 = -PI * PI / (x * x);
        let u = (logu8 / 8.0).exp();
        let cdf = if u == 0.0 {
            (logu8 / 8.0 + w.ln()).exp()
        } else {
            let u8 = logu8.exp();
            let mut p = 1.0;
            p = 1.0 + u8.powi(3) * p;
            p = 1.0 + u8 * u8 * p;
            p = 1.0 + u8 * p;
            w * u * p
        };
        (1.0 - cdf).clamp(0.0, 1.0)
    } else {
        let v = (-2.0 * x * x).exp();
        let (vsq, v3) = (v * v, v.powi(3));
        let mut p = 1.0;
        p = 1.0 - v3 * v3 * v * p;
        p = 1.0 - v3 * vsq * p;
        p = 1.0 - v3 * p;
        (2.0 * v * p).clamp(0.0, 1.0)
    }
}

/// `P(D⁺ₙ >= x)`, the one-sided statistic's survival function (scipy's
/// `scipy.special.smirnov`), by the Birnbaum–Tingey sum
/// `Σ_{j=0}^{⌊n(1-x)⌋} C(n,j) x (x+j/n)^(j-1) (1-x-j/n)^(n-j)`.
///
/// The terms are positive and unimodal in `j`: the sum finds the largest term by a ternary
/// search, then adds terms outward from it until they fall below e⁻⁴⁰ of it. The binomial
/// coefficient is carried from the peak by its ratio recurrence (re-anchored with log-gamma
/// every 256 steps), which keeps the error of each log-term near 1e-11.
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let jmax = ((nf * (1.0 - x)).floor() as u64).min(n);
    let ln_n_fact = ln_gamma(nf + 1.0);
    let ln_binom = |j: f64| ln_n_fact - ln_gamma(j + 1.0) - ln_gamma(nf - j + 1.0);
    let lnx = x.ln();
    // Everything but the binomial coefficient, in log space.
    let rest = |j: u64| -> f64 {
        let jf = j as f64;
        let tail = 1.0 - x - jf / nf;
        let ltail = if j == n {
            0.0
        } else if tail <= 0.0 {
            f64::NEG_INFINITY
        } else {
            (nf - jf) * tail.ln()
        };
        if j == 0 {
            ltail - lnx // C(n,0) x x^-1 (1-x)^n
        } else {
            (jf - 1.0) * (x + jf / nf).ln() + ltail
        }
    };
    let term = |j: u64| ln_binom(j as f64) + lnx + rest(j);
    // Ternary search for the peak of a unimodal sequence.
    let (mut lo, mut hi) = (0u64, jmax);
    while hi - lo > 2 {
        let m1 = lo + (hi - lo) / 3;
        let m2 = hi - (hi - lo) / 3;
        if term(m1) < term(m2) {
            lo = m1 + 1;
        } else {
            hi = m2;
        }
    }
    let peak = (lo..=hi)
        .max_by(|&a, &b| term(a).total_cmp(&term(b)))
        .unwrap_or(lo);
    let lmax = term(peak);
    if !lmax.is_finite() {
        return 0.0;
    }
    let mut sum = 1.0; // the peak term, relative to exp(lmax)
                       // Upward: C(n, j+1) = C(n, j) (n - j) / (j + 1).
    let mut lc = ln_binom(peak as f64);
    let mut j = peak;
    while j < jmax {
        lc += ((nf - j as f64) / (j as f64 + 1.0)).ln();
        j += 1;
        if (j - peak) % 256 == 0 {
            lc = ln_binom(j as f64);
        }
        let lt = lc + lnx + rest(j) - lmax;
        if lt < -40.0 {
            break;
        }
        sum += lt.exp();
    }
    // Downward: C(n, j-1) = C(n, j) j / (n - j + 1).
    let mut lc = ln_binom(peak as f64);
    let mut j = peak;
    while j > 0 {
        lc += (j as f64 / (nf - j as f64 + 1.0)).ln();
        j -= 1;
        if (peak - j) % 256 == 0 {
            lc = ln_binom(j as f64);
        }
        let lt = lc + lnx + rest(j) - lmax;
        if lt < -40.0 {
            break;
        }
        sum += lt.exp();
    }
    (lmax + sum.ln()).exp().clamp(0.0, 1.0)
}

/// `log(n!/n^n)` by Stirling's series (accurate for n > 140).
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // Stirling's series coefficients B_2k / (2k (2k - 1)), highest order first.
    const C: [f64; 8] = [
        -3617.0 / 122_400.0,
        1.0 / 156.0,
        -691.0 / 360_360.0,
        1.0 / 1188.0,
        -1.0 / 1680.0,
        1.0 / 1260.0,
        -1.0 / 360.0,
        1.0 / 12.0,
    ];
    let rn = 1.0 / n;
    let t = rn / n;
    let poly = C.iter().fold(0.0, |acc, c| acc * t + c);
    n.ln() / 2.0 - n + (2.0 * PI).ln() / 2.0 + rn * poly
}

fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * m];
    for i in 0..m {
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            let (brow, crow) = (&b[k * m..(k + 1) * m], &mut c[i * m..(i + 1) * m]);
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += aik * bv;
            }
        }
    }
    c
}

/// `P(D_n <= d)` by Durbin's matrix algorithm as Marsaglia, Tsang and Wang compute it.
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut hm = vec![0.0; m * m];
    let mut v: Vec<f64> = (1..=m).map(|i| 1.0 - h.powi(i as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let mut hpwr: Vec<f64> = (0..m * m)
        .map(|i| if i / m == i % m { 1.0 } else { 0.0 })
        .collect();
    let (mut nn, mut expnt, mut hexpnt) = (n, 0i64, 0i64);
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > scale_up() {
            hm.iter_mut().for_each(|x| *x /= scale_up());
            hexpnt += i64::from(SCALE_EXP);
        }
        nn /= 2;
    }
    let mut p = hpwr[(k - 1) * m + (k - 1)];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < scale_down() {
            p *= scale_up();
            expnt -= i64::from(SCALE_EXP);
        }
    }
    if expnt != 0 {
        p *= 2f64.powi(expnt as i32);
    }
    p.clamp(0.0, 1.0)
}

fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (ip1div2, ip1mod2) = ((i + 1) / 2, (i + 1) % 2);
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// `P(D_n <= x)` by Pomeranz's recursion.
fn kolmogn_pomeranz_cdf(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let n = n as i64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let (mut gp, mut tgp, mut omp) = (vec![1.0; npwrs], vec![1.0; npwrs], vec![1.0; npwrs]);
    for m in 1..npwrs {
        gp[m] = gp[m - 1] * (g / nf) / m as f64;
        tgp[m] = tgp[m - 1] * (2.0 * g / nf) / m as f64;
        omp[m] = omp[m - 1] * ((1.0 - 2.0 * g) / nf) / m as f64;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0i64, 0i64);
    let mut expnt = 0i64;
    let (mut j1, _) = pomeranz_j1j2(0, n, ll, ceilf, roundf);
    for i in 1..(2 * n + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.iter_mut().for_each(|x| *x = 0.0);
        let (nj1, nj2) = pomeranz_j1j2(i, n, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * n + 1 {
            &gp
        } else if i % 2 == 1 {
            &tgp
        } else {
            &omp
        };
        let ln2 = nj2 - k1 + 1;
        if ln2 > 0 {
            let ln2 = ln2 as usize;
            let start = (k1 - v0s) as usize;
            let a = &v0[start..(start + ln2).min(v0.len())];
            let b = &pwrs[..ln2.min(pwrs.len())];
            // Full convolution, as numpy.convolve.
            let mut conv = vec![0.0; a.len() + b.len() - 1];
            for (ia, av) in a.iter().enumerate() {
                for (ib, bv) in b.iter().enumerate() {
                    conv[ia + ib] += av * bv;
                }
            }
            let conv_start = ((nj1 - k1).max(0) as usize).min(conv.len());
            let conv_len = ((nj2 - nj1 + 1).max(0) as usize)
                .min(conv.len() - conv_start)
                .min(v1.len());
            v1[..conv_len].copy_from_slice(&conv[conv_start..conv_start + conv_len]);
            let maxv = v1.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if maxv > 0.0 && maxv < scale_down() {
                v1.iter_mut().for_each(|x| *x *= scale_up());
                expnt -= i64::from(SCALE_EXP);
            }
            v1s = v0s + nj1 - k1;
        }
    }
    let mut ans = v1[(n - v1s) as usize];
    for m in 1..=n {
        if ans.abs() > scale_up() {
            ans *= scale_down();
            expnt += i64::from(SCALE_EXP);
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans *= 2f64.powi(expnt as i32);
    }
    ans.clamp(0.0, 1.0)
}

/// The Pelz–Good asymptotic approximation of `P(D_n <= x)`.
fn kolmogn_pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -PI * PI / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (kv, c) in k.iter_mut().zip(coeffs) {
            *kv = *kv * qpower + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let div = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (kv, d) in k.iter_mut().zip(div) {
        *kv = *kv * q * sqrt2pi / d;
    }
    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let ks = kk as f64;
        let qp = q.powf(ks * ks);
        k2extra += ks * ks * qp;
        let kspi = PI * ks;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks * ks * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    (0..4).map(|i| k[i] / nf.powf(i as f64 / 2.0)).sum()
}

/// Survival function of the two-sided one-sample statistic `D_n` for finite `n` (scipy's
/// `kstwo.sf(x, n)`), choosing the algorithm by `n` and `n x²` as scipy does.
pub fn kstwo_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() || n == 0 {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |acc, i| {
                acc * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0))
            })
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nxsq = t * x;
    if n <= 140 {
        if nxsq <= 0.754693 {
            return (1.0 - kolmogn_dmtw_cdf(n, x)).clamp(0.0, 1.0);
        }
        if nxsq <= 4.0 {
            return (1.0 - kolmogn_pomeranz_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    if nxsq >= 370.0 {
        return 0.0;
    }
    if nxsq >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if nxsq >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}
