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
    let mapped = if KEEP.contains(&status) {
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
    };
    if towards_teams && !progressed && is_transient(mapped) {
        return failover_code(failover_codes);
    }
    mapped
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
}
