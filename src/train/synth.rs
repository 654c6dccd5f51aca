//! Deterministic synthetic loan applications with an `is_late` label, shaped
//! like the Lending-Club-style reference data: the same ten features and
//! category sets, similar marginals (grade mix, sub-grade interest rates,
//! lognormal income correlated with loan size, dti, revolving utilisation,
//! delinquencies, missing `emp_length`/`revol_util`) and a weak-to-moderate,
//! learnable default signal at a late rate of about 1.5 %.
//!
//! The label is `Bernoulli(true_late_probability(app))`, so the generator's
//! own probability is available as an oracle for tests and benchmarks. The
//! same `(rows, seed)` always yields the same data (all randomness comes from
//! [`Rng`]). No row of any real data set is embedded here; only the shapes
//! of the distributions were matched by hand.

use crate::model::input::{cat, num, LoanApplication};
use crate::train::rng::Rng;

/// Loan grades, best to worst.
pub const GRADES: [&str; 7] = ["A", "B", "C", "D", "E", "F", "G"];

/// Loan purposes, in descending order of frequency.
pub const PURPOSES: [&str; 12] = [
    "debt_consolidation",
    "credit_card",
    "other",
    "home_improvement",
    "major_purchase",
    "medical",
    "vacation",
    "car",
    "small_business",
    "house",
    "moving",
    "renewable_energy",
];

/// Employment-length categories (a missing value is `None`, not listed here).
pub const EMP_LENGTHS: [&str; 11] = [
    "< 1 year",
    "1 year",
    "2 years",
    "3 years",
    "4 years",
    "5 years",
    "6 years",
    "7 years",
    "8 years",
    "9 years",
    "10+ years",
];

/// Home-ownership categories.
pub const HOME_OWNERSHIPS: [&str; 4] = ["MORTGAGE", "RENT", "OWN", "ANY"];

/// Relative frequency of each grade (A..G).
const GRADE_WEIGHTS: [f64; 7] = [29.5, 27.5, 24.4, 13.9, 3.9, 0.6, 0.2];

/// Relative frequency of each purpose, aligned with [`PURPOSES`].
const PURPOSE_WEIGHTS: [f64; 12] = [54.8, 28.0, 5.6, 5.6, 1.7, 1.0, 0.8, 0.7, 0.7, 0.6, 0.5, 0.06];

/// Relative frequency of each employment length, aligned with
/// [`EMP_LENGTHS`].
const EMP_WEIGHTS: [f64; 11] = [9.3, 6.5, 9.3, 8.4, 7.0, 5.9, 4.3, 3.6, 3.2, 2.3, 33.2];

/// Probability that `emp_length` is missing.
const EMP_MISSING_RATE: f64 = 0.069;

/// Probability that `revol_util` is missing.
const REVOL_MISSING_RATE: f64 = 0.001;

/// Relative frequency of each home-ownership value, aligned with
/// [`HOME_OWNERSHIPS`].
const HOME_WEIGHTS: [f64; 4] = [45.5, 42.5, 11.84, 0.16];

/// Shift of log income by home ownership, aligned with [`HOME_OWNERSHIPS`].
const HOME_LOG_INC_SHIFT: [f64; 4] = [0.17, -0.13, -0.12, 0.0];

/// Interest rate of sub-grade 1 of each grade, and the step per sub-grade
/// (five sub-grades per grade, like the lender's A1..G5 price grid).
const RATE_BASE: [f64; 7] = [0.0611, 0.1005, 0.1356, 0.1797, 0.2340, 0.2872, 0.3075];
const RATE_STEP: [f64; 7] = [0.0059, 0.0064, 0.0085, 0.0108, 0.0097, 0.0050, 0.0006];

/// Highest interest rate the generator produces.
const MAX_RATE: f64 = 0.3099;

/// Intercept of the late logit, tuned for an overall late rate of ~1.5 %.
const LOGIT_INTERCEPT: f64 = -4.66;

/// `rows` synthetic loan applications and their `is_late` label (0/1).
/// Deterministic: the same `(rows, seed)` always gives the same output, and
/// a shorter run is a prefix of a longer one with the same seed.
pub fn generate(rows: usize, seed: u64) -> Vec<(LoanApplication, u8)> {
    let mut rng = Rng::new(seed);
    (0..rows).map(|_| sample_row(&mut rng)).collect()
}

/// The generator's own probability that `app` is late: `sigmoid(logit)` with
/// a logit driven mainly by the interest rate (hence grade), plus dti,
/// delinquencies, revolving utilisation, income, loan size, a missing
/// `emp_length`, purpose and home ownership. Missing or unknown inputs
/// contribute their neutral value. Always in `(0, 1)`.
pub fn true_late_probability(app: &LoanApplication) -> f64 {
    sigmoid(true_logit(app))
}

/// The log-odds behind [`true_late_probability`].
pub fn true_logit(app: &LoanApplication) -> f64 {
    let numeric = |i: usize, neutral: f64| app.numeric[i].filter(|v| v.is_finite()).unwrap_or(neutral);
    let int_rate = numeric(num::INT_RATE, 0.13);
    let dti = numeric(num::DTI, 17.6).clamp(0.0, 60.0);
    let delinq = numeric(num::DELINQ_2YRS, 0.0).clamp(0.0, 6.0);
    let revol = numeric(num::REVOL_UTIL, 0.45).clamp(0.0, 1.5);
    let log_inc = numeric(num::ANNUAL_INC, 70_000.0).max(1_000.0).ln();
    let log_loan = numeric(num::LOAN_AMNT, 12_500.0).max(500.0).ln();

    let category = |i: usize| app.categorical[i].as_deref();
    let purpose = match category(cat::PURPOSE) {
        Some("small_business") => 0.70,
        Some("moving") => 0.40,
        Some("medical") => 0.30,
        Some("house") => 0.25,
        Some("major_purchase") => 0.20,
        Some("other") => 0.15,
        Some("vacation") => 0.10,
        Some("credit_card") => -0.20,
        Some("car") => -0.20,
        Some("home_improvement") => -0.10,
        _ => 0.0,
    };
    let home = match category(cat::HOME_OWNERSHIP) {
        Some("RENT") => 0.15,
        Some("MORTGAGE") => -0.10,
        _ => 0.0,
    };
    let emp = match category(cat::EMP_LENGTH) {
        None | Some("") | Some("missing") => 0.35,
        Some("< 1 year") => 0.15,
        Some("10+ years") => -0.10,
        _ => 0.0,
    };

    LOGIT_INTERCEPT + 13.0 * (int_rate - 0.13) + 0.025 * (dti - 17.6) + 0.22 * delinq + 0.60 * (revol - 0.45)
        - 0.35 * (log_inc - 11.16)
        + 0.15 * (log_loan - 9.43)
        + purpose
        + home
        + emp
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rounds to `decimals` decimal places.
fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Rounds to the nearest multiple of `step`.
fn round_multiple(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

/// One application and its label.
fn sample_row(rng: &mut Rng) -> (LoanApplication, u8) {
    let g = rng.choose_weighted(&GRADE_WEIGHTS);
    let gf = g as f64;

    // Interest rate: the sub-grade's price, occasionally off-grid (other
    // pricing vintages).
    let sub = rng.below(5) as f64;
    let mut int_rate = RATE_BASE[g] + RATE_STEP[g] * sub;
    if rng.bernoulli(0.12) {
        int_rate += 0.003 * rng.normal();
    }
    let int_rate = round_to(int_rate.clamp(0.0531, MAX_RATE), 4);

    // Income: lognormal, higher for mortgage holders, lower for worse grades.
    let home = rng.choose_weighted(&HOME_WEIGHTS);
    let z_inc = rng.normal();
    let log_inc = 11.16 + HOME_LOG_INC_SHIFT[home] - 0.045 * (gf - 1.5) + 0.52 * z_inc;
    let inc = log_inc.exp().clamp(3_000.0, 2_000_000.0);
    let annual_inc = if rng.bernoulli(0.86) { round_multiple(inc, 1_000.0) } else { inc.round() };

    // Loan amount: lognormal, correlation ~0.46 with log income.
    let z_loan = 0.46 * z_inc + 0.888 * rng.normal();
    let amount = (9.42 + 0.70 * z_loan).exp().clamp(1_000.0, 40_000.0);
    let step = match rng.choose_weighted(&[77.0, 8.0, 15.0]) {
        0 => 1_000.0,
        1 => 500.0,
        _ => 25.0,
    };
    let loan_amnt = round_multiple(amount, step).clamp(1_000.0, 40_000.0);

    let purpose = rng.choose_weighted(&PURPOSE_WEIGHTS);
    let emp_length = if rng.bernoulli(EMP_MISSING_RATE) {
        None
    } else {
        Some(EMP_LENGTHS[rng.choose_weighted(&EMP_WEIGHTS)].to_string())
    };

    // Debt-to-income: higher for worse grades and lower incomes; reflected
    // into [0, 40).
    let mut dti = 17.6 + 1.2 * (gf - 1.5) - 1.6 * z_inc + 8.3 * rng.normal();
    dti = dti.abs();
    if dti > 39.99 {
        dti = (80.0 - dti).clamp(0.0, 39.99);
    }
    let dti = round_to(dti, 2);

    // Revolving utilisation: logit-normal, higher for worse grades and for
    // credit-card refinancing; can exceed 1 slightly.
    let revol_util = if rng.bernoulli(REVOL_MISSING_RATE) {
        None
    } else if rng.bernoulli(0.008) {
        Some(0.0)
    } else {
        let mu = -0.75 + 0.30 * gf.min(5.0) + if purpose == 1 { 0.35 } else { 0.0 };
        Some(round_to(1.03 * sigmoid(mu + 1.15 * rng.normal()), 3))
    };

    // Delinquencies in the last two years: mostly 0, more for worse grades,
    // geometric tail.
    let p_any = 0.09 + 0.045 * gf.min(4.0);
    let mut delinq = 0.0;
    if rng.bernoulli(p_any) {
        delinq = 1.0;
        while delinq < 20.0 && rng.bernoulli(0.3) {
            delinq += 1.0;
        }
    }

    let mut app = LoanApplication::default();
    app.numeric[num::LOAN_AMNT] = Some(loan_amnt);
    app.numeric[num::INT_RATE] = Some(int_rate);
    app.numeric[num::ANNUAL_INC] = Some(annual_inc);
    app.numeric[num::REVOL_UTIL] = revol_util;
    app.numeric[num::DTI] = Some(dti);
    app.numeric[num::DELINQ_2YRS] = Some(delinq);
    app.categorical[cat::PURPOSE] = Some(PURPOSES[purpose].to_string());
    app.categorical[cat::GRADE] = Some(GRADES[g].to_string());
    app.categorical[cat::EMP_LENGTH] = emp_length;
    app.categorical[cat::HOME_OWNERSHIP] = Some(HOME_OWNERSHIPS[home].to_string());

    let late = u8::from(rng.bernoulli(true_late_probability(&app)));
    (app, late)
}

/// Two more columns for `rows` (`synth --extra-features`): `term`, 36 or
/// 60 months (60 more often for late loans), and `verification_status`
/// (`Verified`, `Source Verified`, `Not Verified`; unverified more often for
/// late loans), each blank in about 3 % of rows. Deterministic for a seed.
pub fn extra_features(rows: &[(LoanApplication, u8)], seed: u64) -> Vec<(&'static str, Vec<String>)> {
    let mut rng = Rng::new(seed ^ 0xE87A_0000);
    let mut term = Vec::with_capacity(rows.len());
    let mut status = Vec::with_capacity(rows.len());
    for (_, y) in rows {
        let late = *y == 1;
        term.push(if rng.next_f64() < 0.03 {
            String::new()
        } else if rng.next_f64() < if late { 0.55 } else { 0.25 } {
            "60".into()
        } else {
            "36".into()
        });
        let u = rng.next_f64();
        status.push(if rng.next_f64() < 0.03 {
            String::new()
        } else if u < if late { 0.55 } else { 0.3 } {
            "Not Verified".into()
        } else if u < 0.7 {
            "Source Verified".into()
        } else {
            "Verified".into()
        });
    }
    vec![("term", term), ("verification_status", status)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::evaluation::roc_auc;

    fn late_rate(rows: &[(LoanApplication, u8)]) -> f64 {
        rows.iter().map(|(_, y)| f64::from(*y)).sum::<f64>() / rows.len() as f64
    }

    #[test]
    fn deterministic_per_seed() {
        let a = generate(2_000, 17);
        assert_eq!(a, generate(2_000, 17));
        assert_ne!(a, generate(2_000, 18));
        assert_eq!(generate(500, 17)[..], a[..500]);
        assert!(generate(0, 1).is_empty());
    }

    #[test]
    fn rows_fit_the_schema() {
        let rows = generate(20_000, 3);
        for (app, y) in &rows {
            assert!(*y <= 1);
            for v in app.numeric.iter().flatten() {
                assert!(v.is_finite() && *v >= 0.0, "{app:?}");
            }
            let c = |i: usize| app.categorical[i].as_deref();
            assert!(c(cat::PURPOSE).is_some_and(|v| PURPOSES.contains(&v)));
            assert!(c(cat::GRADE).is_some_and(|v| GRADES.contains(&v)));
            assert!(c(cat::HOME_OWNERSHIP).is_some_and(|v| HOME_OWNERSHIPS.contains(&v)));
            assert!(c(cat::EMP_LENGTH).is_none_or(|v| EMP_LENGTHS.contains(&v)));
            for i in [num::LOAN_AMNT, num::INT_RATE, num::ANNUAL_INC, num::DTI, num::DELINQ_2YRS] {
                assert!(app.numeric[i].is_some(), "{app:?}");
            }

            let amt = app.numeric[num::LOAN_AMNT].unwrap_or(f64::NAN);
            assert!((1_000.0..=40_000.0).contains(&amt) && amt % 25.0 == 0.0, "{amt}");
            let rate = app.numeric[num::INT_RATE].unwrap_or(f64::NAN);
            assert!((0.05..=0.31).contains(&rate), "{rate}");
            assert_eq!(rate, round_to(rate, 4));
            let inc = app.numeric[num::ANNUAL_INC].unwrap_or(f64::NAN);
            assert!(inc >= 1_000.0 && inc.fract() == 0.0, "{inc}");
            let dti = app.numeric[num::DTI].unwrap_or(f64::NAN);
            assert!(dti < 40.0 && dti == round_to(dti, 2), "{dti}");
            if let Some(r) = app.numeric[num::REVOL_UTIL] {
                assert!(r <= 1.1 && r == round_to(r, 3), "{r}");
            }
            let d = app.numeric[num::DELINQ_2YRS].unwrap_or(f64::NAN);
            assert!(d.fract() == 0.0 && d <= 20.0, "{d}");
        }
        // Missingness is present at about the intended rates.
        let n = rows.len() as f64;
        let emp_missing = rows.iter().filter(|(a, _)| a.categorical[cat::EMP_LENGTH].is_none());
        let emp_missing = emp_missing.count() as f64 / n;
        assert!((0.055..0.085).contains(&emp_missing), "{emp_missing}");
        let revol_missing = rows.iter().filter(|(a, _)| a.numeric[num::REVOL_UTIL].is_none());
        assert!((1..=60).contains(&revol_missing.count()));
        // Every grade and purpose shows up in a large sample.
        for g in GRADES {
            assert!(rows.iter().any(|(a, _)| a.categorical[cat::GRADE].as_deref() == Some(g)));
        }
    }

    #[test]
    fn late_rate_is_about_one_and_a_half_percent() {
        for seed in [1, 2, 99] {
            let rate = late_rate(&generate(50_000, seed));
            assert!((0.010..=0.020).contains(&rate), "seed {seed}: {rate}");
        }
    }

    #[test]
    fn worse_grade_means_higher_rate_and_more_lateness() {
        let rows = generate(50_000, 5);
        let mut rate_sum = [0.0; 7];
        let mut count = [0usize; 7];
        let mut late = [0usize; 7];
        for (app, y) in &rows {
            let g =
                app.categorical[cat::GRADE].as_deref().and_then(|v| GRADES.iter().position(|x| *x == v)).unwrap_or(0);
            rate_sum[g] += app.numeric[num::INT_RATE].unwrap_or(0.0);
            count[g] += 1;
            late[g] += usize::from(*y);
        }
        let mean_rate: Vec<f64> = (0..7).map(|g| rate_sum[g] / count[g] as f64).collect();
        assert!(mean_rate.windows(2).all(|w| w[0] < w[1]), "{mean_rate:?}");
        assert!((0.06..0.08).contains(&mean_rate[0]), "{mean_rate:?}");
        assert!((0.25..0.31).contains(&mean_rate[6]), "{mean_rate:?}");
        // Lateness rises from A through D (E..G are too rare to compare here).
        let late_rate: Vec<f64> = (0..4).map(|g| late[g] as f64 / count[g] as f64).collect();
        assert!(late_rate.windows(2).all(|w| w[0] < w[1]), "{late_rate:?}");
    }

    #[test]
    fn oracle_auc_is_moderate() {
        for seed in [7, 8] {
            let rows = generate(50_000, seed);
            let y: Vec<u8> = rows.iter().map(|(_, y)| *y).collect();
            let p: Vec<f64> = rows.iter().map(|(a, _)| true_late_probability(a)).collect();
            let auc = roc_auc(&y, &p).unwrap_or(0.0);
            assert!((0.70..=0.80).contains(&auc), "seed {seed}: oracle AUC {auc}");
            // Calibrated by construction: mean probability tracks the rate.
            let mean_p = p.iter().sum::<f64>() / p.len() as f64;
            assert!((mean_p - late_rate(&rows)).abs() < 0.003);
        }
    }

    #[test]
    fn probability_handles_missing_inputs() {
        let p = true_late_probability(&LoanApplication::default());
        assert!(p > 0.0 && p < 1.0);
        let mut risky = LoanApplication::default();
        risky.numeric[num::INT_RATE] = Some(0.28);
        risky.categorical[cat::PURPOSE] = Some("small_business".into());
        let mut safe = LoanApplication::default();
        safe.numeric[num::INT_RATE] = Some(0.06);
        safe.categorical[cat::EMP_LENGTH] = Some("10+ years".into());
        assert!(true_late_probability(&risky) > 5.0 * true_late_probability(&safe));
    }

    /// Writes a sample as CSV for eyeballing marginals:
    /// `cargo test -- --ignored dump_sample --nocapture`.
    #[test]
    #[ignore]
    fn dump_sample() {
        use crate::model::input::{CSV_FEATURE_ORDER, TARGET};
        let mut out = format!("{},{TARGET}\n", CSV_FEATURE_ORDER.join(","));
        for (app, y) in generate(100_000, 1) {
            let cells: Vec<String> = CSV_FEATURE_ORDER.iter().map(|f| app.cell(f).unwrap_or_default()).collect();
            out.push_str(&format!("{},{y}\n", cells.join(",")));
        }
        let path = std::env::temp_dir().join("synth_sample.csv");
        if let Err(e) = std::fs::write(&path, out) {
            panic!("writing {}: {e}", path.display());
        }
    }
}
