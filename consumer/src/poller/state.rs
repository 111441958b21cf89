//! Whether a poll fires: the mode, the cooldown, and the state a poller carries from one
//! poll to the next (and from one replica to the next, through the control topic).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a poller fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// On every poll where the condition holds.
    #[default]
    Every,
    /// Only on a poll where it holds after one where it did not: once per transition.
    Edge,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Every => "every",
            Mode::Edge => "edge",
        }
    }
}

/// What a poller remembers. Times are milliseconds since the Unix epoch, so that another
/// replica can read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollState {
    /// Whether the condition held at the last successful poll.
    pub active: bool,
    /// When the poller last fired.
    pub fired_at: Option<u64>,
    /// When the last successful poll ended.
    pub polled_at: Option<u64>,
}

impl PollState {
    /// Records a successful poll at `now` where the condition `holds`, and says whether
    /// it fires.
    pub fn decide(
        &mut self,
        mode: Mode,
        cooldown: Option<Duration>,
        holds: bool,
        now: u64,
    ) -> bool {
        let was_active = self.active;
        self.active = holds;
        self.polled_at = Some(now);
        if !holds || (mode == Mode::Edge && was_active) {
            return false;
        }
        if let (Some(cooldown), Some(fired_at)) = (cooldown, self.fired_at) {
            if now.saturating_sub(fired_at) < cooldown.as_millis() as u64 {
                return false;
            }
        }
        self.fired_at = Some(now);
        true
    }

    /// How long to wait at `now` before the first poll: what is left of the interval
    /// since the last poll (by whichever replica made it), or nothing.
    pub fn first_wait(&self, interval: Duration, now: u64) -> Duration {
        match self.polled_at {
            Some(at) => {
                let due = at.saturating_add(interval.as_millis() as u64);
                Duration::from_millis(due.saturating_sub(now))
            }
            None => Duration::ZERO,
        }
    }

    /// The newer of two states, by their last poll.
    pub fn newer(self, other: PollState) -> PollState {
        if other.polled_at > self.polled_at {
            other
        } else {
            self
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, cooldown: Option<u64>, polls: &[(u64, bool)]) -> Vec<u64> {
        let mut state = PollState::default();
        polls
            .iter()
            .filter(|(t, holds)| {
                state.decide(mode, cooldown.map(Duration::from_millis), *holds, *t)
            })
            .map(|(t, _)| *t)
            .collect()
    }

    #[test]
    fn every_fires_on_each_poll_that_holds() {
        let polls = [(0, false), (1, true), (2, true), (3, false), (4, true)];
        assert_eq!(run(Mode::Every, None, &polls), [1, 2, 4]);
    }

    #[test]
    fn edge_fires_once_per_transition() {
        let polls = [
            (0, true),
            (1, true),
            (2, false),
            (3, false),
            (4, true),
            (5, true),
        ];
        assert_eq!(run(Mode::Edge, None, &polls), [0, 4]);
    }

    #[test]
    fn the_cooldown_holds_in_both_modes() {
        let flapping = [(0, true), (10, false), (20, true), (30, false), (200, true)];
        assert_eq!(run(Mode::Edge, Some(100), &flapping), [0, 200]);
        let steady = [(0, true), (50, true), (99, true), (100, true), (150, true)];
        assert_eq!(run(Mode::Every, Some(100), &steady), [0, 100]);
    }

    #[test]
    fn the_first_poll_waits_for_what_is_left_of_the_interval() {
        let state = PollState {
            polled_at: Some(1_000),
            ..PollState::default()
        };
        let interval = Duration::from_millis(500);
        assert_eq!(
            state.first_wait(interval, 1_200),
            Duration::from_millis(300)
        );
        assert_eq!(state.first_wait(interval, 9_000), Duration::ZERO);
        assert_eq!(PollState::default().first_wait(interval, 5), Duration::ZERO);
    }

    #[test]
    fn the_newer_state_wins() {
        let old = PollState {
            active: true,
            fired_at: Some(1),
            polled_at: Some(1),
        };
        let new = PollState {
            active: false,
            fired_at: Some(1),
            polled_at: Some(2),
        };
        assert_eq!(old.newer(new), new);
        assert_eq!(new.newer(old), new);
        assert_eq!(PollState::default().newer(old), old);
    }
}
