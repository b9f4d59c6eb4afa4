//! The flagship's weekly batch, seen from the restaurant chain's side: the customer table it
//! hands to keel every Monday, and the conversions its e-mail system reports a few days later.
//!
//! keel decides one promotion per customer of the table (`keel batch decide`); this module only
//! writes what the chain would have (its customers as CSV) and draws what its customers would do
//! with the promotions they were sent (conversions as CSV, for `keel feedback ingest`). It knows
//! nothing of keel beyond the file formats.

use std::collections::HashMap;
use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{DEVICES, LOYALTY, REGIONS, World};

/// The customer table's header: the unit column, then the context as
/// [`crate::world::Customer::context`] names it.
pub const CUSTOMER_COLUMNS: [&str; 11] = [
    "customer_id",
    "recency_days",
    "visits_per_month",
    "avg_spend",
    "tenure_months",
    "age",
    "open_rate",
    "discount_affinity",
    "device",
    "region",
    "loyalty",
];

/// Writes every customer of `world` as one CSV row (header first).
pub fn write_customers(world: &World, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", CUSTOMER_COLUMNS.join(","))?;
    for c in &world.customers {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            c.id,
            c.recency_days,
            c.visits_per_month,
            c.avg_spend,
            c.tenure_months,
            c.age,
            c.open_rate,
            c.discount_affinity,
            DEVICES[c.device],
            REGIONS[c.region],
            LOYALTY[c.loyalty]
        )?;
    }
    Ok(())
}

/// One e-mail sent: the customer and the promotion keel chose for them.
#[derive(Debug, Clone)]
pub struct Send {
    pub customer: String,
    pub promotion: String,
    /// Whether the customer is in the holdout control group.
    pub control: bool,
}

/// What the customers did with a week's e-mails.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// `(customer, converted 0/1)` per send, in the sends' order.
    pub rows: Vec<(String, u8)>,
    /// Conversions and sends of the control group and of the rest.
    pub control: (u64, u64),
    pub treated: (u64, u64),
    /// Expected conversions of the treated sends had they been drawn at random (the status
    /// quo), for the same customers.
    pub treated_expected_uniform: f64,
}

/// Draws each send's conversion from the world's probabilities with a seeded generator (the
/// world's, not keel's). A customer or promotion the world does not know is an error.
pub fn convert(world: &World, sends: &[Send], seed: u64) -> anyhow::Result<Outcomes> {
    let index: HashMap<&str, usize> = world
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let promotions: HashMap<&str, usize> = world
        .promotions
        .iter()
        .enumerate()
        .map(|(a, p)| (p.as_str(), a))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Outcomes::default();
    for s in sends {
        let Some(&i) = index.get(s.customer.as_str()) else {
            anyhow::bail!("customer {} is not in the simulated world", s.customer);
        };
        let Some(&a) = promotions.get(s.promotion.as_str()) else {
            anyhow::bail!("promotion {} is not in the simulated world", s.promotion);
        };
        let converted = u8::from(rng.random::<f64>() < world.p[i][a]);
        let tally = if s.control { &mut out.control } else { &mut out.treated };
        tally.0 += u64::from(converted);
        tally.1 += 1;
        if !s.control {
            out.treated_expected_uniform += world.p[i].iter().sum::<f64>() / world.k() as f64;
        }
        out.rows.push((s.customer.clone(), converted));
    }
    Ok(out)
}

/// Writes outcomes as the e-mail system would report them: `customer_id,converted`.
pub fn write_conversions(outcomes: &Outcomes, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "customer_id,converted")?;
    for (customer, converted) in &outcomes.rows {
        writeln!(out, "{customer},{converted}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_round_trip_as_csv_rows() {
        let world = World::new(50, 3, 0.05, 3).expect("world");
        let mut csv = Vec::new();
        write_customers(&world, &mut csv).expect("write");
        let text = String::from_utf8(csv).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 51);
        assert_eq!(lines[0], CUSTOMER_COLUMNS.join(","));
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first.len(), CUSTOMER_COLUMNS.len());
        assert_eq!(first[0], world.customers[0].id);
        assert_eq!(first[8], DEVICES[world.customers[0].device]);
    }

    #[test]
    fn conversions_follow_the_worlds_probabilities() {
        let world = World::new(20_000, 3, 0.05, 5).expect("world");
        let best = |i: usize| {
            (0..3)
                .max_by(|a, b| world.p[i][*a].total_cmp(&world.p[i][*b]))
                .expect("k > 0")
        };
        let sends: Vec<Send> = world
            .customers
            .iter()
            .enumerate()
            .map(|(i, c)| Send {
                customer: c.id.clone(),
                promotion: world.promotions[best(i)].clone(),
                control: i % 10 == 0,
            })
            .collect();
        let o = convert(&world, &sends, 9).expect("convert");
        assert_eq!(o.rows.len(), 20_000);
        assert_eq!(o.control.1 + o.treated.1, 20_000);
        let expected: f64 = (0..20_000).map(|i| world.p[i][best(i)]).sum();
        let drawn = (o.control.0 + o.treated.0) as f64;
        // Binomial sum: within 5 standard deviations of its mean.
        assert!(
            (drawn - expected).abs() < 5.0 * expected.sqrt(),
            "{drawn} vs {expected}"
        );
        // The oracle's sends beat the uniform expectation for the same customers.
        assert!(o.treated.0 as f64 > o.treated_expected_uniform);
        let again = convert(&world, &sends, 9).expect("convert");
        assert_eq!(again.rows, o.rows, "the same seed draws the same outcomes");
    }

    #[test]
    fn unknown_customers_and_promotions_are_errors() {
        let world = World::new(10, 2, 0.05, 1).expect("world");
        let send = |c: &str, p: &str| Send {
            customer: c.into(),
            promotion: p.into(),
            control: false,
        };
        let err = convert(&world, &[send("nobody", "winback_voucher")], 1).expect_err("unknown customer");
        assert!(err.to_string().contains("nobody"), "{err}");
        let err = convert(&world, &[send("cust-0000000", "caviar")], 1).expect_err("unknown promotion");
        assert!(err.to_string().contains("caviar"), "{err}");
    }
}
