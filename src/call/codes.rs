//! Final status mapping between the legs (table-driven) and the failover rule towards Teams.

/// Class of a final status, for metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    GlobalError,
}

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::GlobalError,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::GlobalError => "6xx",
        }
    }
}

/// One configured rewrite of a final status on its way to the caller (`[[carrier_trunk]]
/// response_map`): `from` is the status the called side sent, `to` the one the caller gets.
/// Validation keeps both final error codes (`from` 300..=699, `to` 400..=699 except 401/407).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRewrite {
    pub from: u16,
    pub to: u16,
}

/// What a `486 Busy Here` from Teams carries in its Q.850 Reason towards the carrier (row 58).
/// Microsoft maps busy to Q.850 cause 34 (NICC ND1017) where RFC 4497 says 17; carriers that
/// retry on 34 ring the caller again and again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyCause {
    /// Cause 34 becomes this cause (default 17, "user busy"); other causes pass.
    Rewrite(u8),
    /// No Q.850 Reason on a 486 at all (the carrier derives 17 from the status).
    Strip,
    /// Teams' cause as it came.
    Pass,
}

impl Default for BusyCause {
    fn default() -> Self {
        BusyCause::Rewrite(17)
    }
}

/// Final-response policy of a carrier trunk: status tables per direction and the Q.850 rule
/// of row 58.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponsePolicy {
    /// PSTN -> Teams calls: Teams' final error on its way to the carrier.
    pub to_carrier: Vec<StatusRewrite>,
    /// Teams -> PSTN calls: the carrier's final error on its way to Teams.
    pub to_teams: Vec<StatusRewrite>,
    pub busy_cause: BusyCause,
}

/// The Q.850 cause in one `Reason` header value (`Q.850;cause=34;text="..."`), if it is one.
/// Anything else (the `SIP` protocol, a cause outside 1..=127, garbage) is `None`.
pub(crate) fn q850_cause(value: &[u8]) -> Option<u8> {
    let reason = crate::sip::ReasonValue::parse(value).filter(|r| r.is_q850())?;
    reason
        .cause
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| (1..=127).contains(c))
}

/// The `Reason` value that crosses from Teams to the carrier with a final error response
/// (`teams_status` as Teams sent it) or a BYE (`teams_status` = `None`): the first Q.850 cause
/// Teams gave, written fresh as `Q.850;cause=N` (Teams' `text=` stays behind with every other
/// Microsoft diagnostic), after the 486 rule of `busy`. `SIP` protocol Reasons do not cross.
pub(crate) fn q850_reason_to_carrier(
    teams_status: Option<u16>,
    reasons: &[bytes::Bytes],
    busy: BusyCause,
) -> Option<String> {
    let cause = reasons.iter().find_map(|r| q850_cause(r))?;
    let cause = match (teams_status, busy) {
        (Some(486), BusyCause::Strip) => return None,
        (Some(486), BusyCause::Rewrite(to)) if cause == 34 => to,
        _ => cause,
    };
    Some(format!("Q.850;cause={cause}"))
}

/// Statuses passed through unchanged; everything else is folded by class below.
const KEEP: &[u16] = &[
    403, 404, 408, 410, 480, 484, 485, 486, 487, 488, 500, 502, 503, 504, 600, 603,
];

/// Statuses rewritten to another one (from, to).
const REWRITE: &[(u16, u16)] = &[
    // Authentication challenges belong to one hop; they never cross the B2BUA.
    (401, 403),
    (407, 403),
    (604, 404),
    (606, 488),
    (501, 500),
    (505, 500),
    (513, 500),
    (580, 500),
];

/// Status to send to the caller for a final error `status` from the called leg.
/// `towards` is the caller's leg. Towards Teams (Teams -> PSTN calls), a transient failure
/// (408, any 5xx) before any 18x became a code from `failover_codes` (row 30) so Microsoft can
/// try another SBC; after a 18x Microsoft would not fail over, so the mapped code is sent.
pub fn map_final_status(
    status: u16,
    towards_teams: bool,
    progressed: bool,
    failover_codes: &[u16],
) -> u16 {
    map_final_status_with(status, towards_teams, progressed, failover_codes, &[])
}

/// [`map_final_status`] with a configured table of one direction (`StatusRewrite::from` =
/// the status the called side sent, before any built-in folding). Order:
/// 1. towards Teams before any 18x, a transient failure (408, 5xx after the built-in folding)
///    always becomes the failover code (row 30): no table entry can hide it from Microsoft's
///    trunk failover;
/// 2. the first table entry whose `from` is the called side's status decides;
/// 3. otherwise the built-in rules (`KEEP`, `REWRITE`, folding by class);
/// 4. towards Teams before any 18x, a transient result of 2/3 becomes the failover code too.
pub fn map_final_status_with(
    status: u16,
    towards_teams: bool,
    progressed: bool,
    failover_codes: &[u16],
    table: &[StatusRewrite],
) -> u16 {
    let built_in = built_in_status(status);
    let may_fail_over = towards_teams && !progressed;
    if may_fail_over && is_transient(built_in) {
        return failover_code(failover_codes);
    }
    let mapped = table
        .iter()
        .find(|rule| rule.from == status)
        .map_or(built_in, |rule| rule.to);
    if may_fail_over && is_transient(mapped) {
        return failover_code(failover_codes);
    }
    mapped
}

/// The built-in mapping of a final error from the called side.
fn built_in_status(status: u16) -> u16 {
    if KEEP.contains(&status) {
        status
    } else if let Some((_, to)) = REWRITE.iter().find(|(from, _)| *from == status) {
        *to
    } else {
        match status {
            // We do not follow redirects and never hand the peer's Contacts across.
            300..=399 => 480,
            400..=499 => 480,
            500..=599 => 500,
            600..=699 => 603,
            _ => 500,
        }
    }
}

/// A failure worth trying elsewhere: timeout or server error.
pub(crate) fn is_transient(status: u16) -> bool {
    status == 408 || (500..=599).contains(&status)
}

/// The failover code we send to Teams: 503 when configured, else the first configured.
pub(crate) fn failover_code(failover_codes: &[u16]) -> u16 {
    if failover_codes.contains(&503) || failover_codes.is_empty() {
        503
    } else {
        failover_codes[0]
    }
}

/// Reason phrase for the statuses the call sends.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_FAILOVER: &[u16] = &[408, 503, 504];

    #[test]
    fn carrier_errors_map_towards_caller() {
        // (carrier status, expected towards a PSTN caller / towards Teams after a 18x)
        let table: &[(u16, u16)] = &[
            (486, 486),
            (404, 404),
            (403, 403),
            (480, 480),
            (487, 487),
            (603, 603),
            (600, 600),
            (401, 403),
            (407, 403),
            (302, 480),
            (415, 480),
            (503, 503),
            (502, 502),
            (501, 500),
            (599, 500),
            (606, 488),
            (604, 404),
        ];
        for (from, to) in table {
            assert_eq!(
                map_final_status(*from, false, false, DEFAULT_FAILOVER),
                *to,
                "{from}"
            );
            assert_eq!(
                map_final_status(*from, true, true, DEFAULT_FAILOVER),
                *to,
                "{from}"
            );
        }
    }

    #[test]
    fn row30_transient_failures_before_progress_become_failover_code_towards_teams() {
        for status in [408, 500, 502, 503, 504, 580] {
            assert_eq!(map_final_status(status, true, false, DEFAULT_FAILOVER), 503);
        }
        assert_eq!(map_final_status(500, true, false, &[504]), 504);
        // Definitive answers are kept so Microsoft does not try again (row 58).
        for status in [486, 404, 603, 403] {
            assert_eq!(
                map_final_status(status, true, false, DEFAULT_FAILOVER),
                status
            );
        }
    }

    #[test]
    fn row58_table_is_keyed_by_the_called_sides_status_and_row30_comes_first() {
        let table = [
            StatusRewrite { from: 415, to: 488 },
            StatusRewrite { from: 503, to: 486 },
            StatusRewrite { from: 486, to: 502 },
            StatusRewrite { from: 404, to: 480 },
        ];
        // Towards the carrier: the table decides, the built-in rules otherwise.
        assert_eq!(
            map_final_status_with(415, false, false, DEFAULT_FAILOVER, &table),
            488
        );
        assert_eq!(
            map_final_status_with(503, false, false, DEFAULT_FAILOVER, &table),
            486
        );
        assert_eq!(
            map_final_status_with(416, false, false, DEFAULT_FAILOVER, &table),
            480
        );
        // Towards Teams before any 18x: transient failures stay the failover code (row 30),
        // and a transient table result becomes it too.
        assert_eq!(
            map_final_status_with(503, true, false, DEFAULT_FAILOVER, &table),
            503
        );
        assert_eq!(map_final_status_with(486, true, false, &[504], &table), 504);
        assert_eq!(
            map_final_status_with(404, true, false, DEFAULT_FAILOVER, &table),
            480
        );
        // After a 18x the table decides.
        assert_eq!(
            map_final_status_with(503, true, true, DEFAULT_FAILOVER, &table),
            486
        );
        assert_eq!(
            map_final_status_with(486, true, true, DEFAULT_FAILOVER, &table),
            502
        );
        // An empty table is map_final_status.
        for status in 300..=699 {
            for (teams, progressed) in [(false, false), (true, false), (true, true)] {
                assert_eq!(
                    map_final_status_with(status, teams, progressed, DEFAULT_FAILOVER, &[]),
                    map_final_status(status, teams, progressed, DEFAULT_FAILOVER)
                );
            }
        }
    }

    #[test]
    fn q850_cause_parsing() {
        assert_eq!(q850_cause(b"Q.850;cause=34;text=\"x\""), Some(34));
        assert_eq!(q850_cause(b" q.850 ; Cause = 17 "), Some(17));
        assert_eq!(q850_cause(b"Q.850;text=\"a;b\";cause=16"), Some(16));
        for bad in [
            &b"SIP;cause=486"[..],
            b"Q.850",
            b"Q.850;cause=",
            b"Q.850;cause=0",
            b"Q.850;cause=128",
            b"Q.850;cause=0034",
            b"Q.850;cause=-1",
            b"Q.8500;cause=34",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(q850_cause(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn row58_q850_reason_towards_the_carrier() {
        let busy = [bytes::Bytes::from_static(b"Q.850;cause=34;text=\"Busy\"")];
        let reason = |status, policy| q850_reason_to_carrier(status, &busy, policy);
        assert_eq!(
            reason(Some(486), BusyCause::default()).as_deref(),
            Some("Q.850;cause=17")
        );
        assert_eq!(
            reason(Some(486), BusyCause::Rewrite(21)).as_deref(),
            Some("Q.850;cause=21")
        );
        assert_eq!(
            reason(Some(486), BusyCause::Pass).as_deref(),
            Some("Q.850;cause=34")
        );
        assert_eq!(reason(Some(486), BusyCause::Strip), None);
        // Not a 486: the cause crosses as sent; a BYE (no status) likewise.
        assert_eq!(
            reason(Some(480), BusyCause::Strip).as_deref(),
            Some("Q.850;cause=34")
        );
        assert_eq!(
            reason(None, BusyCause::default()).as_deref(),
            Some("Q.850;cause=34")
        );
        let sip_only = [bytes::Bytes::from_static(b"SIP;cause=486")];
        assert_eq!(
            q850_reason_to_carrier(Some(486), &sip_only, BusyCause::Pass),
            None
        );
        assert_eq!(
            q850_reason_to_carrier(Some(486), &[], BusyCause::Pass),
            None
        );
    }
}
