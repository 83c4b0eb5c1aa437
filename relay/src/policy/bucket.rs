//! The token bucket every allowance of the relay is made of.
//!
//! A bucket holds up to `burst` tokens and earns one per `every` time
//! units (seconds or milliseconds: the caller keeps to one). The rate is
//! kept by the caller, so a bucket is 16 bytes, whatever table holds it.

/// How fast a bucket refills, and up to how many tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Most tokens held.
    pub burst: u32,
    /// Time units to earn one token.
    pub every: u64,
}

impl Rate {
    /// `burst` tokens, one more per `every` time units.
    pub const fn new(burst: u32, every: u64) -> Self {
        Self { burst, every }
    }

    fn every(&self) -> u64 {
        self.every.max(1)
    }
}

/// A token bucket (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: u32,
    refilled_at: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(rate: Rate, now: u64) -> Self {
        Self {
            tokens: rate.burst,
            refilled_at: now,
        }
    }

    /// Tokens held (as of the last refill).
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    fn earned(&self, rate: Rate, now: u64) -> u64 {
        now.saturating_sub(self.refilled_at) / rate.every()
    }

    /// Adds the tokens earned since the last refill. Time not yet worth a
    /// token is carried to the next refill, unless the bucket is full. A
    /// clock that goes back earns nothing.
    pub fn refill(&mut self, rate: Rate, now: u64) {
        let earned = self.earned(rate, now);
        if earned == 0 {
            return;
        }
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(earned).min(rate.burst);
        self.refilled_at = if self.tokens >= rate.burst {
            now
        } else {
            self.refilled_at
                .saturating_add(u64::from(earned).saturating_mul(rate.every()))
        };
    }

    /// Takes one token if there is one, returning how many are left.
    pub fn spend(&mut self) -> Option<u32> {
        self.tokens = self.tokens.checked_sub(1)?;
        Some(self.tokens)
    }

    /// Refills, then takes one token, or says how many time units to wait
    /// for one (at least 1). Unlike [`TokenBucket::refill`], a refill here
    /// that earns restarts the period at `now`: time short of the next
    /// token is dropped (the stricter rule the per-connection and creation
    /// allowances have always had).
    pub fn take(&mut self, rate: Rate, now: u64) -> Result<(), u32> {
        let earned = self.earned(rate, now);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(rate.burst);
            self.refilled_at = now;
        }
        if self.spend().is_none() {
            let wait = self
                .refilled_at
                .saturating_add(rate.every())
                .saturating_sub(now);
            return Err(u32::try_from(wait).unwrap_or(u32::MAX).max(1));
        }
        Ok(())
    }

    /// True if the bucket would be full at `now` (what [`TokenBucket::take`]
    /// would find): such a bucket equals a new one and may be forgotten.
    pub fn is_full(&self, rate: Rate, now: u64) -> bool {
        u64::from(self.tokens).saturating_add(self.earned(rate, now)) >= u64::from(rate.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn ms_buckets_refill_at_their_rate_and_keep_partial_time() {
        let rate = Rate::new(4, 100);
        let mut b = TokenBucket::full(rate, 1_000);
        b.tokens = 0;
        b.refill(rate, 1_050);
        assert_eq!(b.tokens, 0);
        b.refill(rate, 1_150);
        assert_eq!(b.tokens, 1);
        // The 50 ms left over from the first token count toward the next.
        b.refill(rate, 1_200);
        assert_eq!(b.tokens, 2);
        b.refill(rate, 9_000);
        assert_eq!(b.tokens, 4);
        // A clock that goes back earns nothing.
        b.tokens = 0;
        b.refill(rate, 10);
        assert_eq!(b.tokens, 0);
    }

    #[test]
    fn full_host_buckets_are_forgotten_only_when_equal_to_new_ones() {
        let rate = Rate::new(4, 10);
        let mut b = TokenBucket::full(rate, NOW);
        assert!(b.is_full(rate, NOW));
        b.take(rate, NOW).unwrap();
        assert!(!b.is_full(rate, NOW + 9));
        assert!(b.is_full(rate, NOW + 10));
    }

    /// `take` drops the time short of the next token when it earns one;
    /// `refill` carries it (the two rules the relay's allowances have).
    #[test]
    fn take_restarts_the_period_and_refill_carries_it() {
        let rate = Rate::new(2, 10);
        let mut taken = TokenBucket::full(rate, 0);
        taken.take(rate, 0).unwrap();
        taken.take(rate, 0).unwrap();
        taken.take(rate, 15).unwrap();
        assert_eq!(taken.take(rate, 20), Err(5));
        let mut refilled = TokenBucket::full(rate, 0);
        refilled.spend();
        refilled.spend();
        refilled.refill(rate, 15);
        assert_eq!(refilled.spend(), Some(0));
        refilled.refill(rate, 20);
        assert_eq!(refilled.tokens(), 1);
    }
}
