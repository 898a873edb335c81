//! Local Media Optimization (row 61, teams-direct-routing.md §3.8): on a trunk with
//! `BypassMode`, Microsoft's INVITEs and re-INVITEs carry `X-MS-UserLocation`
//! (`internal`/`external`: is the Teams user inside the corporate network?), `X-MS-MediaPath`
//! (the SBC FQDNs the media should traverse, the target SBC last) and `X-MS-UserSite` (the
//! admin's site id, case-sensitive). An SBC offers its internal media address to internal
//! users and its external one to the others.
//!
//! Here: the headers are read from Microsoft's messages only (the caller of [`LmoHeaders::of`]
//! passes Teams-leg requests), and a tenant with LMO configured gets its Teams-leg media
//! address from them ([`LocalMedia::address`]): at the start of a Teams -> PSTN call, and
//! again whenever a re-INVITE from Microsoft names a location (our answer then carries the
//! new address on the same port). On PSTN -> Teams calls our offer uses the configured guess
//! (internal by default, as Microsoft's own flows assume) until Microsoft's re-INVITE says
//! otherwise. The media stays anchored on the SBC whatever `X-MS-MediaPath` says.

use std::net::IpAddr;

use bytes::Bytes;

use crate::sip::{HeaderName, Message};

/// Entries of `X-MS-MediaPath` kept (a path through more SBCs than this is not a real one).
pub const MAX_MEDIA_PATH: usize = 8;
/// Longest `X-MS-UserSite` kept.
pub const MAX_SITE_CHARS: usize = 64;

fn header(name: &'static [u8]) -> HeaderName {
    HeaderName::Other(Bytes::from_static(name))
}

/// Where Microsoft says the Teams user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserLocation {
    Internal,
    External,
}

impl UserLocation {
    pub fn label(self) -> &'static str {
        match self {
            UserLocation::Internal => "internal",
            UserLocation::External => "external",
        }
    }

    /// `internal` / `external`, any case.
    pub fn from_name(name: &str) -> Option<UserLocation> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("internal") {
            Some(UserLocation::Internal)
        } else if name.eq_ignore_ascii_case("external") {
            Some(UserLocation::External)
        } else {
            None
        }
    }
}

/// The LMO headers of one message from Microsoft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LmoHeaders {
    /// `X-MS-UserLocation`; `None` when absent or neither value.
    pub location: Option<UserLocation>,
    /// `X-MS-MediaPath`: SBC FQDNs in order (lowercase), at most [`MAX_MEDIA_PATH`]; entries
    /// that are not DNS names are left out.
    pub media_path: Vec<String>,
    /// `X-MS-UserSite` as sent (printable ASCII, at most [`MAX_SITE_CHARS`]).
    pub site: Option<String>,
}

impl LmoHeaders {
    pub fn of(msg: &Message) -> LmoHeaders {
        let location = msg.header(&header(b"X-MS-UserLocation")).and_then(|v| {
            std::str::from_utf8(&v)
                .ok()
                .and_then(UserLocation::from_name)
        });
        let mut media_path = Vec::new();
        for value in msg.header_values(&header(b"X-MS-MediaPath")) {
            let Ok(text) = std::str::from_utf8(&value) else {
                continue;
            };
            for entry in text.split(',').map(str::trim) {
                if media_path.len() < MAX_MEDIA_PATH && is_dns_name(entry) {
                    media_path.push(entry.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        let site = msg
            .header(&header(b"X-MS-UserSite"))
            .and_then(|v| String::from_utf8(v.to_vec()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| {
                !s.is_empty()
                    && s.chars().count() <= MAX_SITE_CHARS
                    && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            });
        LmoHeaders {
            location,
            media_path,
            site,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.location.is_none() && self.media_path.is_empty() && self.site.is_none()
    }

    /// Whether the media path Microsoft computed starts at one of `ours` (our FQDNs): the
    /// media traverses us. `None` when Microsoft sent no path.
    pub fn media_path_starts_at(&self, ours: &[&str]) -> Option<bool> {
        let first = self.media_path.first()?;
        Some(ours.iter().any(|o| o.eq_ignore_ascii_case(first)))
    }
}

fn is_dns_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The Teams-leg media addresses of a tenant with LMO: one socket per call, offered under
/// the address that suits where the user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// Offered to internal users (the SBC's address on the corporate network).
    pub internal: IpAddr,
    /// Offered to external users (`[media.teams] advertised`, the public address).
    pub external: IpAddr,
    /// What our offer on a PSTN -> Teams call assumes before Microsoft tells.
    pub inbound_guess: UserLocation,
}

impl LocalMedia {
    pub fn address(&self, location: UserLocation) -> IpAddr {
        match location {
            UserLocation::Internal => self.internal,
            UserLocation::External => self.external,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(headers: &str) -> Message {
        let text = format!(
            "INVITE sip:+4930123450@vnsbc.contoso.com:5061;user=phone SIP/2.0\r\n\
             Via: SIP/2.0/TLS sip-du-a-eu.pstnhub.microsoft.com:5061;branch=z9hG4bK1\r\n\
             From: <sip:+84455555555@sip.pstnhub.microsoft.com>;tag=1\r\n\
             To: <sip:+4930123450@vnsbc.contoso.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             {headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text), &crate::sip::Limits::default()).unwrap()
    }

    #[test]
    fn row61_microsofts_lmo_headers_are_read() {
        let h = LmoHeaders::of(&invite(
            "X-MS-UserLocation: internal\r\n\
             X-MS-MediaPath: proxysbc.contoso.com, VNsbc.contoso.com\r\n\
             X-MS-UserSite: Vietnam\r\n",
        ));
        assert_eq!(h.location, Some(UserLocation::Internal));
        assert_eq!(h.media_path, ["proxysbc.contoso.com", "vnsbc.contoso.com"]);
        assert_eq!(
            h.site.as_deref(),
            Some("Vietnam"),
            "site ids keep their case"
        );
        assert_eq!(
            h.media_path_starts_at(&["ProxySBC.contoso.com"]),
            Some(true)
        );
        assert_eq!(h.media_path_starts_at(&["vnsbc.contoso.com"]), Some(false));
        let h = LmoHeaders::of(&invite("x-ms-userlocation:  External \r\n"));
        assert_eq!(h.location, Some(UserLocation::External));
        assert_eq!(h.media_path_starts_at(&["a.b"]), None);
    }

    #[test]
    fn row61_without_bypass_mode_there_are_no_headers_and_garbage_is_left_out() {
        assert!(LmoHeaders::of(&invite("")).is_empty());
        let path: Vec<String> = (0..20).map(|n| format!("sbc{n}.contoso.com")).collect();
        let h = LmoHeaders::of(&invite(&format!(
            "X-MS-UserLocation: somewhere\r\n\
             X-MS-MediaPath: {}, not a name, 10.0.0.1\r\n\
             X-MS-UserSite: {}\r\n",
            path.join(","),
            "s".repeat(65)
        )));
        assert_eq!(h.location, None);
        assert_eq!(h.media_path.len(), MAX_MEDIA_PATH);
        assert_eq!(h.media_path[0], "sbc0.contoso.com");
        assert_eq!(h.site, None);
    }

    #[test]
    fn row61_address_per_location() {
        let media = LocalMedia {
            internal: "192.168.3.5".parse().unwrap(),
            external: "203.0.113.10".parse().unwrap(),
            inbound_guess: UserLocation::Internal,
        };
        assert_eq!(media.address(UserLocation::Internal), media.internal);
        assert_eq!(media.address(UserLocation::External), media.external);
    }
}
