//! The retry strategies of a busy lock ([`RetryStrategy`]): the delay after each failed
//! attempt, its jitter, and what a caller waiting in line has left and has spent.

use std::time::Duration;

/// How long to sleep between two attempts to take a busy lock.
///
/// The delay after the `n`-th failed attempt (`n` from 1) is the strategy's value for `n`; with
/// full jitter (on by default, [`LockConfig::jitter`](super::LockConfig::jitter)) the sleep is drawn uniformly between zero
/// and that value, so contenders that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::lock::RetryStrategy;
///
/// let ms = Duration::from_millis;
/// let exp = RetryStrategy::Exponential(ms(100), ms(3000));
/// assert_eq!(exp.delay(1), ms(100));
/// assert_eq!(exp.delay(3), ms(400));
/// assert_eq!(exp.delay(20), ms(3000)); // capped
/// assert_eq!(RetryStrategy::Linear(ms(50), ms(120)).delay(2), ms(100));
/// assert_eq!(RetryStrategy::Fixed(ms(5)).delay(9), ms(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// The same delay after every attempt.
    Fixed(Duration),
    /// `step × n` after the `n`-th attempt, at most the second value.
    Linear(Duration, Duration),
    /// The first value, doubled after every attempt, at most the second value.
    Exponential(Duration, Duration),
}

impl Default for RetryStrategy {
    /// 100 ms, doubling, capped at 3 s.
    fn default() -> Self {
        Self::Exponential(Duration::from_millis(100), Duration::from_secs(3))
    }
}

impl RetryStrategy {
    /// The delay (before jitter) after the `attempt`-th failed attempt, counted from 1.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::RetryStrategy;
    /// assert_eq!(RetryStrategy::default().delay(2), Duration::from_millis(200));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let n = attempt.max(1);
        match *self {
            Self::Fixed(d) => d,
            Self::Linear(step, max) => step.saturating_mul(n).min(max),
            Self::Exponential(initial, max) => {
                let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
                initial.saturating_mul(factor).min(max)
            }
        }
    }

    /// The longest the sleeps after attempts `after + 1 ..= last` can take together (jitter
    /// only shortens them): how long a caller that has slept `after` times may still wait.
    pub(crate) fn remaining(&self, after: u32, last: u32) -> Duration {
        // Exact for the first steps; past them every delay is at most the cap.
        const EXACT: u32 = 64;
        let cap = match *self {
            Self::Fixed(d) => d,
            Self::Linear(_, max) | Self::Exponential(_, max) => max,
        };
        let first = after.saturating_add(1);
        let exact_last = last.min(after.saturating_add(EXACT));
        let exact =
            (first..=exact_last).fold(Duration::ZERO, |acc, n| acc.saturating_add(self.delay(n)));
        exact.saturating_add(cap.saturating_mul(last.saturating_sub(exact_last)))
    }

    /// How many of the sleeps after attempts `after + 1 ..= last` fit, unjittered, in
    /// `elapsed`: the retries a caller spent waiting that long in line.
    pub(crate) fn spent(&self, after: u32, last: u32, elapsed: Duration) -> u32 {
        if let Self::Fixed(d) = *self {
            let n = if d.is_zero() {
                u128::MAX
            } else {
                elapsed.as_nanos() / d.as_nanos()
            };
            return u32::try_from(n)
                .unwrap_or(u32::MAX)
                .min(last.saturating_sub(after));
        }
        let mut acc = Duration::ZERO;
        let mut n = 0;
        while after + n < last {
            acc = acc.saturating_add(self.delay(after + n + 1));
            if acc > elapsed {
                break;
            }
            n += 1;
        }
        n
    }

    /// The sleep before the next attempt: [`delay`](Self::delay), or with `jitter` a uniform
    /// draw between zero and it.
    pub(crate) fn sleep(&self, attempt: u32, jitter: bool) -> Duration {
        let d = self.delay(attempt);
        if !jitter || d.is_zero() {
            return d;
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_time_left_and_the_retries_spent_in_line_follow_the_schedule() {
        let exp = RetryStrategy::Exponential(MS(100), MS(400));
        // 100 + 200 + 400 + 400 after none slept; 400 + 400 after two.
        assert_eq!(exp.remaining(0, 4), MS(1100));
        assert_eq!(exp.remaining(2, 4), MS(800));
        assert_eq!(exp.remaining(4, 4), Duration::ZERO);
        assert_eq!(exp.remaining(0, 1000), MS(300 + 400 * 998));
        assert_eq!(exp.spent(0, 4, MS(299)), 1);
        assert_eq!(exp.spent(0, 4, MS(300)), 2);
        assert_eq!(exp.spent(0, 4, MS(10_000)), 4);
        assert_eq!(exp.spent(2, 4, MS(500)), 1);
        let fixed = RetryStrategy::Fixed(MS(50));
        assert_eq!(fixed.remaining(1, 3), MS(100));
        assert_eq!(fixed.spent(0, 3, MS(120)), 2);
        assert_eq!(fixed.spent(0, 3, MS(1000)), 3);
        assert_eq!(RetryStrategy::Fixed(Duration::ZERO).spent(0, 3, MS(1)), 3);
    }

    #[test]
    fn delays_follow_the_strategy_and_jitter_stays_below_them() {
        let exp = RetryStrategy::default();
        let delays: Vec<_> = (1..=7).map(|n| exp.delay(n)).collect();
        assert_eq!(
            delays,
            [
                MS(100),
                MS(200),
                MS(400),
                MS(800),
                MS(1600),
                MS(3000),
                MS(3000)
            ]
        );
        assert_eq!(exp.delay(u32::MAX), MS(3000));
        let lin = RetryStrategy::Linear(MS(10), MS(25));
        assert_eq!(
            [lin.delay(1), lin.delay(2), lin.delay(3)],
            [MS(10), MS(20), MS(25)]
        );
        for n in 1..50 {
            assert!(exp.sleep(n, true) <= exp.delay(n));
            assert_eq!(exp.sleep(n, false), exp.delay(n));
        }
    }
}
