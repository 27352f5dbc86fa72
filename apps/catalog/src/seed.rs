//! Deterministic demo data: [`products`] makes the same 1,000 products on every
//! machine and every run, ids and timestamps included.
//!
//! Determinism is what makes seeding idempotent across replicas: three
//! instances starting at once on an empty PostgreSQL all insert the same ids,
//! and `ON CONFLICT DO NOTHING` keeps one copy. The generator is a SplitMix64
//! written here rather than `rand`, whose `StdRng` does not promise the same
//! stream across versions. Inserting is [`crate::db`]'s job.

use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};

use crate::model::Product;

/// How many products a fresh database gets.
pub const SEED_COUNT: usize = 1_000;

/// The fixed seed of the generator.
const SEED: u64 = 0x5354_5241_5441_2021; // "STRATA !"

/// 2025-01-01T00:00:00Z: seeded products are created one minute apart from here.
const BASE_UNIX_SECONDS: i64 = 1_735_689_600;

const ADJECTIVES: &[&str] = &[
    "Ergonomic",
    "Rustic",
    "Sleek",
    "Intelligent",
    "Gorgeous",
    "Handcrafted",
    "Practical",
    "Refined",
    "Licensed",
    "Generic",
    "Incredible",
    "Awesome",
    "Fantastic",
    "Tasty",
    "Small",
    "Unbranded",
    "Modern",
    "Elegant",
    "Durable",
    "Lightweight",
    "Heavy Duty",
    "Compact",
    "Recycled",
    "Premium",
    "Portable",
];

const MATERIALS: &[&str] = &[
    "Steel", "Wooden", "Concrete", "Plastic", "Cotton", "Granite", "Rubber", "Metal", "Soft",
    "Fresh", "Frozen", "Bronze", "Ceramic", "Leather", "Bamboo", "Marble", "Aluminum", "Wool",
    "Glass", "Silk",
];

// Singular nouns only: the descriptions say "this keyboard stays...".
const PRODUCTS: &[&str] = &[
    "Keyboard", "Chair", "Car", "Computer", "Shirt", "Hat", "Table", "Boot", "Glove", "Ball",
    "Bike", "Apron", "Towel", "Mouse", "Lamp", "Bottle", "Backpack", "Watch", "Headset", "Wallet",
    "Mug", "Pillow", "Blanket", "Speaker", "Clock", "Desk", "Sofa", "Jacket", "Lantern",
    "Umbrella",
];

const OPENINGS: &[&str] = &[
    "Built for everyday use, this",
    "Designed by a small studio, the",
    "Our best-selling",
    "Made to last, this",
    "Customers love this",
    "Upgrade your routine with this",
    "Simple and honest, the",
    "Tested for thousands of hours, this",
];

const QUALITIES: &[&str] = &[
    "stays comfortable all day",
    "is easy to clean",
    "fits in any room",
    "ships in recyclable packaging",
    "comes with a two-year warranty",
    "balances style and function",
    "is assembled in minutes without tools",
    "holds up to daily wear",
    "looks as good as it works",
    "is backed by our no-questions return policy",
];

const CLOSINGS: &[&str] = &[
    "A great gift.",
    "Available in several colors.",
    "Limited stock.",
    "Pairs well with the rest of the collection.",
    "",
    "Rated 4.8 out of 5 by our customers.",
];

/// A tiny deterministic PRNG (SplitMix64): good enough for demo data, and its
/// output never changes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        // The modulo bias is irrelevant for demo data.
        let len = items.len() as u64;
        items[(self.next() % len) as usize]
    }
}

/// The seed products, in creation order.
pub fn products() -> Vec<Product> {
    let mut rng = SplitMix64(SEED);
    let base = OffsetDateTime::from_unix_timestamp(BASE_UNIX_SECONDS)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (0..SEED_COUNT)
        .map(|i| {
            let created_at = base + Duration::minutes(i as i64);
            let millis = (created_at.unix_timestamp_nanos() / 1_000_000) as u64;
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&rng.next().to_be_bytes());
            random[8..].copy_from_slice(&rng.next().to_be_bytes()[..2]);
            let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();

            let noun = rng.pick(PRODUCTS);
            let name = format!("{} {} {}", rng.pick(ADJECTIVES), rng.pick(MATERIALS), noun);
            let description = format!(
                "{} {} {} and {}. {}",
                rng.pick(OPENINGS),
                noun.to_lowercase(),
                rng.pick(QUALITIES),
                rng.pick(QUALITIES),
                rng.pick(CLOSINGS)
            )
            .trim_end()
            .to_owned();
            // Prices from 1.00 to 999.99, most ending in .99 or .49 like a shop's.
            let units = 1 + rng.next() % 999;
            let cents = match rng.next() % 4 {
                0 => 99,
                1 => 49,
                2 => 0,
                _ => rng.next() % 100,
            };
            let price = Decimal::new((units * 100 + cents).min(99_999) as i64, 2);
            Product {
                id,
                name,
                description,
                price,
                created_at,
                updated_at: created_at,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_well_formed() {
        let a = products();
        let b = products();
        assert_eq!(a, b);
        assert_eq!(a.len(), SEED_COUNT);
        let mut ids: Vec<_> = a.iter().map(|p| p.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort by creation");
        ids.dedup();
        assert_eq!(ids.len(), SEED_COUNT);
        for p in &a {
            assert_eq!(p.id.get_version_num(), 7);
            assert!(!p.name.is_empty() && p.name.len() <= 200);
            assert!(p.price >= Decimal::ONE && p.price < Decimal::new(100_000, 2));
            assert_eq!(p.price.scale(), 2);
        }
        let distinct_names: std::collections::HashSet<_> = a.iter().map(|p| &p.name).collect();
        assert!(
            distinct_names.len() > 900,
            "names vary: {}",
            distinct_names.len()
        );
    }
}
