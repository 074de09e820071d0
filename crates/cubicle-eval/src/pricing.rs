//! Estimated cost of a run from its token counts.
//!
//! The prices below are public list prices in US dollars per million tokens
//! as of late 2025, kept here as *estimates*: providers change them, discount
//! them and bill batch or regional traffic differently. A report says
//! "estimated" wherever it shows one; an unknown model has no estimate
//! rather than a wrong one.

use cubicle_protocol::conversation::Usage;

/// List prices of one model family, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Input read from the prompt cache.
    pub cache_read: f64,
    /// Input written to the prompt cache.
    pub cache_write: f64,
}

/// Model-name fragments and their prices; the first match wins, so more
/// specific names come first.
pub const PRICES: &[(&str, Price)] = &[
    (
        "claude-opus-4-5",
        Price {
            input: 5.0,
            output: 25.0,
            cache_read: 0.5,
            cache_write: 6.25,
        },
    ),
    (
        "claude-opus",
        Price {
            input: 15.0,
            output: 75.0,
            cache_read: 1.5,
            cache_write: 18.75,
        },
    ),
    (
        "claude-sonnet",
        Price {
            input: 3.0,
            output: 15.0,
            cache_read: 0.3,
            cache_write: 3.75,
        },
    ),
    (
        "claude-haiku-4",
        Price {
            input: 1.0,
            output: 5.0,
            cache_read: 0.1,
            cache_write: 1.25,
        },
    ),
    (
        "claude-3-5-haiku",
        Price {
            input: 0.8,
            output: 4.0,
            cache_read: 0.08,
            cache_write: 1.0,
        },
    ),
    (
        "gpt-4o-mini",
        Price {
            input: 0.15,
            output: 0.6,
            cache_read: 0.075,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-4o",
        Price {
            input: 2.5,
            output: 10.0,
            cache_read: 1.25,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-4.1-mini",
        Price {
            input: 0.4,
            output: 1.6,
            cache_read: 0.1,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-4.1",
        Price {
            input: 2.0,
            output: 8.0,
            cache_read: 0.5,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    // Hand-written references and local models cost nothing.
    (
        "reference:",
        Price {
            input: 0.0,
            output: 0.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    ),
    (
        "replay:",
        Price {
            input: 0.0,
            output: 0.0,
            cache_read: 0.0,
            cache_write: 0.0,
        },
    ),
];

/// The price of `model` (`provider:model` or a bare name), if known.
pub fn price_of(model: &str) -> Option<Price> {
    PRICES
        .iter()
        .find(|(fragment, _)| model.contains(fragment))
        .map(|(_, p)| *p)
}

/// Estimated cost of `usage` on `model`, USD; `None` for an unknown model.
pub fn estimate(model: &str, usage: &Usage) -> Option<f64> {
    let p = price_of(model)?;
    let m = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1e6;
    Some(
        m(usage.input_tokens, p.input)
            + m(usage.output_tokens, p.output)
            + m(usage.cache_read_input_tokens, p.cache_read)
            + m(usage.cache_creation_input_tokens, p.cache_write),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonnet_costs_by_the_million() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 1_000_000,
        };
        let cost = estimate("anthropic:claude-sonnet-4-5", &usage).unwrap_or(-1.0);
        assert!((cost - (3.0 + 1.5 + 0.3)).abs() < 1e-9, "{cost}");
        assert_eq!(estimate("reference:hand-written", &usage), Some(0.0));
        assert_eq!(estimate("llama:local-thing", &usage), None);
    }
}
