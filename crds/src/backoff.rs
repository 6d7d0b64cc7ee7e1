//! The retry policy of every watch in both binaries: quick and capped at 2 s, because a
//! config change waits for the watch to come back, and the API server is local to the
//! cluster (kube-rs's default grows to 30 s, which after an outage delays changes that much).

use kube::runtime::utils::Backoff;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(2);

/// 200 ms, doubling to at most 2 s, with up to 25% jitter so replicas do not retry in step.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(CAP);
        // Jitter from the clock's sub-microsecond noise: no RNG needed for this.
        let noise = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 1000);
        Some(base + base * noise / 4000)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grows_to_the_cap_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut b = super::WatchBackoff::default();
        let first = b.next().unwrap();
        assert!(first >= super::FIRST && first <= super::FIRST * 5 / 4);
        let late: Vec<_> = (0..10).filter_map(|_| b.next()).collect();
        assert!(late.iter().all(|d| *d <= super::CAP * 5 / 4));
        b.reset();
        assert!(b.next().unwrap() <= super::FIRST * 5 / 4);
    }
}
