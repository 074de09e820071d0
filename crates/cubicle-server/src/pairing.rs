//! Pairing a device: the person asks for an offer (in the UI or with `cubicle
//! pair`), which shows a short one-time code and a QR code of the pairing URL;
//! the device opens the URL (or types the code) and gets its own token.
//!
//! An offer is good for one use and [`OFFER_TTL`]. Redeeming is rate-limited
//! for the whole server, whoever asks — an attacker on the network can use
//! many addresses — to [`ATTEMPTS_PER_WINDOW`] tries per [`WINDOW`]; and
//! [`MAX_FAILURES`] wrong codes cancel every pending offer, so guessing an
//! 8-digit code has at most a 5-in-100-million chance before the person has
//! to show a new one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use qrcode::QrCode;
use qrcode::render::{svg, unicode};
use subtle::ConstantTimeEq;

use crate::devices::Scope;

/// How long an offer can be redeemed.
pub const OFFER_TTL: Duration = Duration::from_secs(5 * 60);
/// The rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Redeem attempts the server answers per window.
pub const ATTEMPTS_PER_WINDOW: usize = 5;
/// Wrong codes after which every pending offer is cancelled.
pub const MAX_FAILURES: u32 = 5;
/// Offers that may be pending at once.
const MAX_PENDING: usize = 4;

/// A pending offer.
#[derive(Debug, Clone)]
struct Offer {
    code: String,
    scope: Scope,
    expires: Instant,
}

/// Why a code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedeemError {
    /// Too many attempts in the window.
    #[error("too many pairing attempts; try again in {0} s")]
    RateLimited(u64),
    /// No pending offer has this code (wrong, expired, used or cancelled).
    #[error("that pairing code is not valid; show a new one on the computer running Cubicle")]
    Invalid,
}

/// The pending offers and the limiter.
#[derive(Debug, Default)]
pub(crate) struct Offers {
    pending: Vec<Offer>,
    attempts: VecDeque<Instant>,
    failures: u32,
}

impl Offers {
    /// Makes a new offer and returns its code (8 digits).
    pub fn offer(&mut self, scope: Scope, now: Instant) -> String {
        self.pending.retain(|o| o.expires > now);
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        let code = new_code();
        self.pending.push(Offer {
            code: code.clone(),
            scope,
            expires: now + OFFER_TTL,
        });
        code
    }

    /// Redeems a code: the scope the offer granted, once.
    pub fn redeem(&mut self, given: &str, now: Instant) -> Result<Scope, RedeemError> {
        while self
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.attempts.pop_front();
        }
        if self.attempts.len() >= ATTEMPTS_PER_WINDOW {
            let oldest = self.attempts.front().copied().unwrap_or(now);
            let wait = WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(RedeemError::RateLimited(wait.as_secs().max(1)));
        }
        self.attempts.push_back(now);
        self.pending.retain(|o| o.expires > now);
        let given: String = given.chars().filter(char::is_ascii_digit).collect();
        let mut hit = None;
        for (i, o) in self.pending.iter().enumerate() {
            if bool::from(o.code.as_bytes().ct_eq(given.as_bytes())) {
                hit = Some(i);
            }
        }
        match hit {
            Some(i) => {
                self.failures = 0;
                Ok(self.pending.remove(i).scope)
            }
            None => {
                self.failures += 1;
                if self.failures >= MAX_FAILURES {
                    self.pending.clear();
                    self.failures = 0;
                }
                Err(RedeemError::Invalid)
            }
        }
    }
}

/// 8 random digits from the OS generator.
fn new_code() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut n = 0u64;
    for b in &bytes[..8] {
        n = (n << 8) | u64::from(*b);
    }
    format!("{:08}", n % 100_000_000)
}

/// The code as people read it: `1234-5678`.
pub fn display_code(code: &str) -> String {
    if code.len() == 8 && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// The QR code of `text` as an SVG document, or `None` if it is too long for one.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(240, 240)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

/// The QR code of `text` drawn with Unicode half blocks for a terminal, or
/// `None` if it is too long for one. Dark on light, with the quiet zone, so
/// phones read it on dark and light terminals alike.
pub fn qr_text(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_code_works_once() {
        let mut o = Offers::default();
        let now = Instant::now();
        let code = o.offer(Scope::Control, now);
        assert_eq!(code.len(), 8);
        assert_eq!(o.redeem(&display_code(&code), now), Ok(Scope::Control));
        assert_eq!(o.redeem(&code, now), Err(RedeemError::Invalid));
    }

    #[test]
    fn codes_expire() {
        let mut o = Offers::default();
        let now = Instant::now();
        let code = o.offer(Scope::Watch, now);
        let later = now + OFFER_TTL + Duration::from_secs(1);
        assert_eq!(o.redeem(&code, later), Err(RedeemError::Invalid));
    }

    #[test]
    fn attempts_are_limited_and_wrong_guesses_cancel_offers() {
        let mut o = Offers::default();
        let now = Instant::now();
        let code = o.offer(Scope::Watch, now);
        let wrong = if code == "00000000" {
            "11111111"
        } else {
            "00000000"
        };
        for _ in 0..ATTEMPTS_PER_WINDOW {
            assert_eq!(o.redeem(wrong, now), Err(RedeemError::Invalid));
        }
        // The window is full: even the right code is refused now…
        assert!(matches!(
            o.redeem(&code, now),
            Err(RedeemError::RateLimited(s)) if s >= 1
        ));
        // …and after the window, it has been cancelled by the failures.
        assert_eq!(o.redeem(&code, now + WINDOW), Err(RedeemError::Invalid));
        let fresh = o.offer(Scope::Watch, now + WINDOW);
        assert_eq!(o.redeem(&fresh, now + WINDOW), Ok(Scope::Watch));
    }

    #[test]
    fn qr_codes_render() {
        let url = "https://192.168.1.20:8443/pair#code=12345678&fp=sha256:AB";
        let svg = qr_svg(url).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
        let text = qr_text(url).unwrap();
        assert!(text.lines().count() > 10);
        assert!(text.contains('█') || text.contains('▀') || text.contains('▄'));
    }
}
