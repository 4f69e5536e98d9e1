//! What an answer cost: its tokens times the catalog's prices.
//!
//! Prices are per million tokens in micro-dollars ([`Price`]), so a cost is computed exactly
//! in integers, in micro-micro-dollars (10⁻¹² USD: tokens × micro-dollars per million tokens),
//! and turned into dollars only at the end. Cached prompt tokens cost the cached-input price
//! when the catalog has one, else the input price. A model without prices is never guessed:
//! its tokens are [`Cost::Unpriced`], counted apart.

use crate::catalog::{Price, Pricing};

/// The tokens of one answer, split as they are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BilledTokens {
    /// Prompt tokens at the input price.
    pub input: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: u64,
    /// Generated tokens.
    pub output: u64,
}

impl BilledTokens {
    /// Every token of the answer.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.cached_input)
            .saturating_add(self.output)
    }
}

/// The cost of one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cost {
    /// The model has prices: this many US dollars.
    Priced(f64),
    /// The model has no prices: this many tokens went unpriced.
    Unpriced(u64),
}

fn pico_usd(tokens: u64, price: Price) -> u128 {
    u128::from(tokens) * u128::from(price.micro_usd())
}

/// The cost of `tokens` at `pricing` (the served model's, from the catalog).
pub fn cost(pricing: Option<&Pricing>, tokens: BilledTokens) -> Cost {
    let Some(p) = pricing else {
        return Cost::Unpriced(tokens.total());
    };
    let cached = p.cached_input.unwrap_or(p.input);
    let pico = pico_usd(tokens.input, p.input)
        + pico_usd(tokens.cached_input, cached)
        + pico_usd(tokens.output, p.output);
    Cost::Priced(pico as f64 / 1e12)
}

#[cfg(test)]
mod tests {
    // A failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pricing(input: f64, output: f64, cached: Option<f64>) -> Pricing {
        Pricing {
            input: Price::from_usd(input).unwrap(),
            output: Price::from_usd(output).unwrap(),
            cached_input: cached.map(|c| Price::from_usd(c).unwrap()),
        }
    }

    #[test]
    fn tokens_times_prices_with_cached_input() {
        let t = BilledTokens {
            input: 1_000_000,
            cached_input: 2_000_000,
            output: 500_000,
        };
        // $0.15 + 2 × $0.075 + 0.5 × $0.60.
        assert_eq!(
            cost(Some(&pricing(0.15, 0.60, Some(0.075))), t),
            Cost::Priced(0.6)
        );
        // Without a cached price, cached tokens cost the input price.
        let Cost::Priced(usd) = cost(Some(&pricing(0.15, 0.60, None)), t) else {
            panic!("priced");
        };
        assert!((usd - 0.75).abs() < 1e-12, "{usd}");
        assert_eq!(cost(None, t), Cost::Unpriced(3_500_000));
    }

    #[test]
    fn one_token_at_the_smallest_price_is_not_lost() {
        let t = BilledTokens {
            input: 1,
            ..BilledTokens::default()
        };
        let p = Pricing {
            input: Price::from_micro_usd(1),
            output: Price::from_micro_usd(1),
            cached_input: None,
        };
        assert_eq!(cost(Some(&p), t), Cost::Priced(1e-12));
        let huge = BilledTokens {
            input: u64::MAX,
            cached_input: u64::MAX,
            output: u64::MAX,
        };
        let Cost::Priced(usd) = cost(Some(&pricing(1e6, 1e6, None)), huge) else {
            panic!("priced");
        };
        assert!(usd.is_finite() && usd > 0.0);
    }
}
