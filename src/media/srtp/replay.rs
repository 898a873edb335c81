//! Packet index estimation (RFC 3711 §3.3.1) and the 64-packet replay window (§3.3.2).

use super::SrtpError;

/// Packets further behind the highest index than this are refused as too old.
pub(crate) const REPLAY_WINDOW: u64 = 64;
/// SRTP indexes are 48 bits (ROC || SEQ).
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;

/// Highest index seen on one stream plus a bitmap of the 64 indexes at and below it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplayWindow {
    started: bool,
    highest: u64,
    /// Bit n set: index `highest - n` was accepted.
    seen: u64,
}

impl ReplayWindow {
    /// Highest accepted index, if any.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }

    /// Estimates the 48-bit SRTP index of a packet with sequence number `seq`: the guess
    /// closest to the highest index seen (RFC 3711 §3.3.1). Before the first packet the
    /// rollover counter is 0, which is what SDES keying assumes.
    pub fn estimate_rtp_index(&self, seq: u16) -> Result<u64, SrtpError> {
        if !self.started {
            return Ok(u64::from(seq));
        }
        let roc = (self.highest >> 16) as i64;
        let s_l = (self.highest & 0xFFFF) as i64;
        let seq = i64::from(seq);
        let guessed_roc = if s_l < 0x8000 {
            if seq - s_l > 0x8000 {
                roc - 1
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        if guessed_roc < 0 {
            // A late packet from before the first one seen, with ROC 0: nothing to decrypt
            // it with, and far outside the replay window anyway.
            return Err(SrtpError::TooOld);
        }
        let index = (guessed_roc as u64) << 16 | seq as u64;
        if index > MAX_RTP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        Ok(index)
    }

    /// Refuses an index already accepted or older than the window.
    pub fn check(&self, index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= REPLAY_WINDOW {
            return Err(SrtpError::TooOld);
        }
        if self.seen & (1 << behind) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an index that passed `check` (and, on receive, authentication).
    pub fn accept(&mut self, index: u64) {
        if !self.started {
            self.started = true;
            self.highest = index;
            self.seen = 1;
        } else if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.highest = index;
        } else {
            let behind = self.highest - index;
            if behind < REPLAY_WINDOW {
                self.seen |= 1 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept_seq(window: &mut ReplayWindow, seq: u16) -> u64 {
        let index = window.estimate_rtp_index(seq).unwrap();
        window.check(index).unwrap();
        window.accept(index);
        index
    }

    #[test]
    fn first_packet_has_roc_zero() {
        let window = ReplayWindow::default();
        assert_eq!(window.estimate_rtp_index(65_000).unwrap(), 65_000);
        assert_eq!(window.highest(), None);
    }

    #[test]
    fn sequence_wrap_increments_roc() {
        let mut window = ReplayWindow::default();
        for seq in [65_533u16, 65_534, 65_535, 0, 1] {
            accept_seq(&mut window, seq);
        }
        assert_eq!(window.highest(), Some((1 << 16) | 1));
        // A straggler from before the wrap still maps to ROC 0.
        assert_eq!(window.estimate_rtp_index(65_530).unwrap(), 65_530);
    }

    #[test]
    fn late_packet_across_wrap_gets_previous_roc() {
        let mut window = ReplayWindow::default();
        accept_seq(&mut window, 65_535);
        accept_seq(&mut window, 2);
        let index = window.estimate_rtp_index(65_534).unwrap();
        assert_eq!(index, 65_534);
        assert_eq!(window.check(index), Ok(()));
        window.accept(index);
        assert_eq!(window.highest(), Some((1 << 16) | 2));
    }

    #[test]
    fn packet_before_the_first_with_roc_zero_is_too_old() {
        let mut window = ReplayWindow::default();
        accept_seq(&mut window, 10);
        assert_eq!(window.estimate_rtp_index(65_000), Err(SrtpError::TooOld));
    }

    #[test]
    fn duplicates_and_old_packets_are_refused() {
        let mut window = ReplayWindow::default();
        for seq in 100..200u16 {
            accept_seq(&mut window, seq);
        }
        assert_eq!(window.check(199), Err(SrtpError::Replayed));
        assert_eq!(window.check(150), Err(SrtpError::Replayed));
        assert_eq!(window.check(136), Err(SrtpError::Replayed));
        assert_eq!(window.check(135), Err(SrtpError::TooOld));
        assert_eq!(window.check(200), Ok(()));
    }

    #[test]
    fn gaps_inside_the_window_are_accepted_once() {
        let mut window = ReplayWindow::default();
        accept_seq(&mut window, 1);
        accept_seq(&mut window, 5);
        assert_eq!(window.check(3), Ok(()));
        window.accept(3);
        assert_eq!(window.check(3), Err(SrtpError::Replayed));
        // A jump beyond the window clears it.
        accept_seq(&mut window, 500);
        assert_eq!(window.check(499), Ok(()));
        assert_eq!(window.check(436), Err(SrtpError::TooOld));
    }

    #[test]
    fn index_space_exhaustion_is_reported() {
        let mut window = ReplayWindow::default();
        window.accept(MAX_RTP_INDEX - 1);
        assert_eq!(window.estimate_rtp_index(0), Err(SrtpError::IndexExhausted));
    }
}
