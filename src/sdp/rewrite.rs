//! The four SDP rewrites between the carrier leg and the Teams leg.
//!
//! Each one copies the source SDP line by line, replacing only what the SBC owns: `o=` (the
//! leg's [`LegOrigin`]), `c=` and the `m=` port/profile/format list (our media address), the
//! security and ICE attributes of the leg, the direction, and the `rtpmap`/`fmtp`/`rtcp-fb`
//! lines of formats that are dropped or renumbered. Everything else is kept verbatim.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::attr::{leading_pt, matching_pt, Codec, Direction};
use super::crypto::{select_crypto, SdesKey, SrtpSuite};
use super::model::{Line, MediaSection, Sdp};
use super::{LegOrigin, SdpError};

/// Encoding names (as in `a=rtpmap`, case-insensitive) a leg may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecList {
    names: Vec<String>,
}

impl CodecList {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> CodecList {
        CodecList {
            names: names.into_iter().map(|n| n.as_ref().to_owned()).collect(),
        }
    }

    /// What Teams accepts on the SBC leg (§3.3-3.5): SILK, G.711, G.722, G.729, DTMF, CN.
    pub fn teams_default() -> CodecList {
        CodecList::new([
            "SILK",
            "PCMU",
            "PCMA",
            "G722",
            "G729",
            "telephone-event",
            "CN",
        ])
    }

    /// A typical PSTN trunk: G.711, G.722, G.729, DTMF, CN (no SILK).
    pub fn carrier_default() -> CodecList {
        CodecList::new(["PCMU", "PCMA", "G722", "G729", "telephone-event", "CN"])
    }

    pub fn allows(&self, encoding: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(encoding))
    }
}

/// ICE-lite credentials the SBC announces on a bypass Teams leg. Keep one per leg and reuse it
/// for the 183 and the 200 (row 53); generate a new one only for an ICE restart.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    ufrag: String,
    pwd: String,
}

const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl IceCredentials {
    /// 8-character ufrag and 24-character password (RFC 5245 minimums are 4 and 22).
    pub fn generate() -> IceCredentials {
        use rand::seq::SliceRandom as _;
        let mut rng = rand::thread_rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .filter_map(|_| ICE_CHARS.choose(&mut rng))
                .map(|&c| char::from(c))
                .collect()
        };
        let ufrag = pick(8);
        let pwd = pick(24);
        IceCredentials { ufrag, pwd }
    }

    /// Checks RFC 5245 lengths (ufrag 4-256, pwd 22-256) and the ice-char set.
    pub fn new(ufrag: &str, pwd: &str) -> Option<IceCredentials> {
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        let ok = (4..=256).contains(&ufrag.len())
            && (22..=256).contains(&pwd.len())
            && ice_chars(ufrag)
            && ice_chars(pwd);
        ok.then(|| IceCredentials {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
        })
    }

    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    pub fn pwd(&self) -> &str {
        &self.pwd
    }
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

/// What the SBC puts into SDP on the Teams leg.
#[derive(Debug, Clone, Copy)]
pub struct TeamsSide<'a> {
    /// Our media address and port on the Teams leg; keep it for the whole call (row 41).
    pub local: SocketAddr,
    /// Our SRTP sending key for this leg.
    pub key: &'a SdesKey,
    /// `Some` on a media-bypass trunk: ICE-lite attributes and one host candidate (row 50).
    pub ice: Option<&'a IceCredentials>,
    pub codecs: &'a CodecList,
    /// The SBC turns the carrier's in-band tones into RFC 4733 events (row 48): Teams gets
    /// `telephone-event` next to G.711 even when the carrier's SDP has none.
    pub inband_dtmf: bool,
    /// The SBC turns Teams' comfort noise into G.711 noise for a carrier without CN (row 49):
    /// Teams gets `CN/8000` next to G.711 even when the carrier's SDP has none.
    pub comfort_noise: bool,
}

/// What the SBC puts into SDP on the carrier leg.
#[derive(Debug, Clone, Copy)]
pub struct CarrierSide<'a> {
    /// Our media address and port on the carrier leg.
    pub local: SocketAddr,
    pub codecs: &'a CodecList,
    /// Offer `a=rtcp-mux` to this carrier (answers follow what the carrier offered).
    pub offer_rtcp_mux: bool,
    /// Drop vendor attributes (`a=x-...`, Microsoft's are large) to keep UDP messages small.
    pub strip_vendor_attributes: bool,
}

/// Carrier offer -> offer to Teams: RTP/SAVP with a fresh SDES line (tag 1, `_80`, `|2^31`),
/// `a=rtcp-mux` and `a=rtcp:<port>`, our address in `c=`/`m=`, codecs filtered to
/// `side.codecs` (no payload type twice), hold as `a=inactive` (also for a `c=0.0.0.0` hold),
/// ICE-lite attributes when `side.ice` is set, the carrier's ICE/crypto lines removed, and
/// every other `m=` line kept with port 0.
pub fn offer_towards_teams(
    carrier_offer: &Sdp,
    side: &TeamsSide<'_>,
    origin: &mut LegOrigin,
) -> Result<Sdp, SdpError> {
    if side.ice.is_some() && !side.local.is_ipv4() {
        return Err(SdpError::BypassNeedsIpv4);
    }
    let (audio, section) = carrier_offer.primary_audio().ok_or(SdpError::NoAudio)?;
    let formats = offer_formats(section, side.codecs)?;
    let extra_event_pt = inband_event_pt(section, &formats, side, None);
    let extra_cn_pt = comfort_noise_pt(section, &formats, extra_event_pt, side, None);
    let slots = carrier_offer
        .media()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == audio {
                Slot::Active
            } else {
                Slot::Disabled {
                    media: m.media_type(),
                    proto: Cow::Borrowed(secure_profile(m.profile())),
                    formats: m.format_list(),
                }
            }
        })
        .collect();
    let plan = Plan {
        slots,
        local: side.local,
        proto: Cow::Borrowed("RTP/SAVP"),
        formats,
        rtcp_mux: true,
        crypto: Some(side.key.crypto_attribute(1, SrtpSuite::AesCm128HmacSha1_80)),
        ice: side.ice,
        hold_as_inactive: true,
        strip_vendor: false,
        extra_event_pt,
        extra_cn_pt,
    };
    Ok(build(carrier_offer, audio, &plan, origin))
}

/// Carrier answer + the Teams offer it answers -> answer to Teams. The `m=` lines mirror the
/// Teams offer (the non-anchored ones answered with port 0, row 54); the crypto line echoes the
/// tag and suite of the offer line we chose (`_80` first, no MKI first; rows 43, 44) with our
/// key, and no other crypto line (RFC 4568 §5.1.2: the lines not echoed are refused);
/// payload types use the numbers of the Teams offer. An offer over `UDP/TLS/RTP/SAVP[F]`
/// (DTLS-SRTP with SDES beside it, doc 3.1) is answered with SDES, so over `RTP/SAVP[F]`
/// without fingerprint or setup: the profile of what we answer, as Microsoft's own SDES
/// answers to such offers are written.
pub fn answer_towards_teams(
    carrier_answer: &Sdp,
    teams_offer: &Sdp,
    side: &TeamsSide<'_>,
    origin: &mut LegOrigin,
) -> Result<Sdp, SdpError> {
    if side.ice.is_some() && !side.local.is_ipv4() {
        return Err(SdpError::BypassNeedsIpv4);
    }
    let (offer_audio, offered) = teams_offer.primary_audio().ok_or(SdpError::NoAudio)?;
    let (answer_audio, answered) = carrier_answer.primary_audio().ok_or(SdpError::NoAudio)?;
    let chosen = select_crypto(offered.crypto()).ok_or(SdpError::NoUsableCrypto)?;
    let formats = answer_formats(answered, offered, side.codecs)?;
    let extra_event_pt = inband_event_pt(answered, &formats, side, Some(offered));
    let extra_cn_pt = comfort_noise_pt(answered, &formats, extra_event_pt, side, Some(offered));
    let plan = Plan {
        slots: mirror_slots(teams_offer, offer_audio),
        local: side.local,
        proto: Cow::Borrowed(sdes_profile(offered.profile())),
        formats,
        rtcp_mux: offered.rtcp_mux(),
        crypto: Some(side.key.crypto_attribute(chosen.tag, chosen.suite)),
        ice: side.ice,
        hold_as_inactive: true,
        strip_vendor: false,
        extra_event_pt,
        extra_cn_pt,
    };
    Ok(build(carrier_answer, answer_audio, &plan, origin))
}

/// Teams offer -> offer to the carrier: RTP/AVP with our carrier-side address, no crypto, no
/// ICE, `a=rtcp-mux` only if `side.offer_rtcp_mux`, codecs filtered to `side.codecs`, only the
/// anchored audio stream (the others are answered with port 0 towards Teams).
pub fn offer_towards_carrier(
    teams_offer: &Sdp,
    side: &CarrierSide<'_>,
    origin: &mut LegOrigin,
) -> Result<Sdp, SdpError> {
    let (audio, section) = teams_offer.primary_audio().ok_or(SdpError::NoAudio)?;
    let formats = offer_formats(section, side.codecs)?;
    let mut slots = SmallVec::new();
    slots.push(Slot::Active);
    let plan = Plan {
        slots,
        local: side.local,
        proto: Cow::Borrowed(plain_profile(section.profile())),
        formats,
        rtcp_mux: side.offer_rtcp_mux,
        crypto: None,
        ice: None,
        hold_as_inactive: false,
        strip_vendor: side.strip_vendor_attributes,
        extra_event_pt: None,
        extra_cn_pt: None,
    };
    Ok(build(teams_offer, audio, &plan, origin))
}

/// Teams answer + the carrier offer it answers -> answer to the carrier: `m=` lines mirror the
/// carrier offer (others port 0), RTP/AVP, our carrier-side address, payload types renumbered
/// to the carrier's, `a=rtcp-mux` only if the carrier offered it.
pub fn answer_towards_carrier(
    teams_answer: &Sdp,
    carrier_offer: &Sdp,
    side: &CarrierSide<'_>,
    origin: &mut LegOrigin,
) -> Result<Sdp, SdpError> {
    let (offer_audio, offered) = carrier_offer.primary_audio().ok_or(SdpError::NoAudio)?;
    let (answer_audio, answered) = teams_answer.primary_audio().ok_or(SdpError::NoAudio)?;
    let formats = answer_formats(answered, offered, side.codecs)?;
    let plan = Plan {
        slots: mirror_slots(carrier_offer, offer_audio),
        local: side.local,
        proto: Cow::Borrowed(offered.profile()),
        formats,
        rtcp_mux: offered.rtcp_mux(),
        crypto: None,
        ice: None,
        hold_as_inactive: false,
        strip_vendor: side.strip_vendor_attributes,
        extra_event_pt: None,
        extra_cn_pt: None,
    };
    Ok(build(teams_answer, answer_audio, &plan, origin))
}

/// Answer to an offered `m=` line the SBC does not take (video, a second audio stream, ...):
/// the same media, profile and format list with port 0 (RFC 3264 §6; row 54).
pub fn rejected_media_section(offered: &MediaSection) -> MediaSection {
    MediaSection::from_lines(vec![disabled_m_line(
        offered.media_type(),
        offered.profile(),
        offered.format_list(),
    )])
}

/// One output `m=` section: the anchored audio stream, or a port-0 copy of another one.
enum Slot<'a> {
    Active,
    Disabled {
        media: &'a str,
        proto: Cow<'a, str>,
        formats: &'a str,
    },
}

struct Plan<'a> {
    slots: SmallVec<[Slot<'a>; 4]>,
    local: SocketAddr,
    proto: Cow<'a, str>,
    /// (payload type written, payload type in the source), in output order.
    formats: SmallVec<[(u8, u8); 16]>,
    /// Write `a=rtcp-mux` and `a=rtcp:<same port>` (RFC 8035; row 45).
    rtcp_mux: bool,
    /// Value of the `a=crypto:` attribute to write.
    crypto: Option<String>,
    ice: Option<&'a IceCredentials>,
    /// Teams profile: any hold becomes `a=inactive`, a direction is always written (row 39).
    hold_as_inactive: bool,
    strip_vendor: bool,
    /// `telephone-event/8000` under this number, added after the source's formats (the SBC
    /// generates the events itself from in-band tones, row 48).
    extra_event_pt: Option<u8>,
    /// `CN/8000` under this number, added last (the SBC turns CN into noise for a carrier
    /// without it, row 49).
    extra_cn_pt: Option<u8>,
}

/// Attributes that belong to the source leg's transport or security and never cross legs.
fn is_leg_attribute(name: &str) -> bool {
    matches!(
        name,
        "crypto"
            | "candidate"
            | "remote-candidates"
            | "end-of-candidates"
            | "ice-ufrag"
            | "ice-pwd"
            | "ice-options"
            | "ice-lite"
            | "ice-mismatch"
            | "ice-pacing"
            | "rtcp"
            | "rtcp-mux"
            | "rtcp-mux-only"
            | "fingerprint"
            | "setup"
            | "tls-id"
            | "group"
            | "msid-semantic"
    )
}

fn is_direction(name: &str, value: Option<&str>) -> bool {
    value.is_none() && Direction::from_attribute(name).is_some()
}

fn build(src: &Sdp, audio: usize, plan: &Plan<'_>, origin: &mut LegOrigin) -> Sdp {
    let c_line = connection_line(plan.local.ip());
    let mut session = Vec::with_capacity(src.session_lines().len() + 3);
    let mut c_written = false;
    for line in src.session_lines() {
        // c= goes to its RFC 4566 place (before b=/t=) even if the source had it after t=.
        if !c_written && matches!(line.kind(), b'b' | b't' | b'r' | b'z' | b'k' | b'a') {
            session.push(c_line.clone());
            c_written = true;
        }
        if matches!(line.kind(), b'o' | b'c') {
            continue;
        }
        if let Some((name, value)) = line.attribute() {
            if is_leg_attribute(name)
                || is_direction(name, value)
                || (plan.strip_vendor && name.starts_with("x-"))
            {
                continue;
            }
        }
        session.push(line.clone());
    }
    if !c_written {
        session.push(c_line.clone());
    }
    // s= and t= are mandatory (RFC 4566); lenient peers omit them, strict ones reject that.
    if !session.iter().any(|l| l.kind() == b's') {
        let at = usize::from(session.first().is_some_and(|l| l.kind() == b'v'));
        session.insert(at, Line::new(b's', "-"));
    }
    if !session.iter().any(|l| l.kind() == b't') {
        let at = session
            .iter()
            .position(|l| matches!(l.kind(), b'r' | b'z' | b'k' | b'a'))
            .unwrap_or(session.len());
        session.insert(at, Line::new(b't', "0 0"));
    }
    if plan.ice.is_some() {
        session.push(Line::new(b'a', "ice-lite"));
    }

    let mut media = Vec::with_capacity(plan.slots.len());
    for slot in &plan.slots {
        match slot {
            // `audio` indexes `src` (the callers found it there); nothing to anchor otherwise.
            Slot::Active => media.extend(active_section(src, audio, plan)),
            Slot::Disabled {
                media: kind,
                proto,
                formats,
            } => media.push(MediaSection::from_lines(vec![disabled_m_line(
                kind, proto, formats,
            )])),
        }
    }
    let mut out = Sdp::from_parts(session, media);
    origin.stamp(&mut out);
    out
}

fn active_section(src: &Sdp, audio: usize, plan: &Plan<'_>) -> Option<MediaSection> {
    let section = src.media().get(audio)?;
    let direction = output_direction(src, audio, plan.hold_as_inactive);
    let port = plan.local.port();
    let mut lines = Vec::with_capacity(section.lines().len() + 8);

    let mut m = String::with_capacity(48);
    let _ = write!(m, "audio {port} {}", plan.proto);
    for (out_pt, _) in &plan.formats {
        let _ = write!(m, " {out_pt}");
    }
    for pt in plan.extra_event_pt.iter().chain(&plan.extra_cn_pt) {
        let _ = write!(m, " {pt}");
    }
    lines.push(Line::new(b'm', m));

    let mut direction_written = false;
    let mut rtpmap_seen: SmallVec<[u8; 16]> = SmallVec::new();
    let mut fmtp_seen: SmallVec<[u8; 16]> = SmallVec::new();
    for line in section.lines().iter().skip(1) {
        if line.kind() == b'c' {
            // Our session-level c= covers every section; a media-level copy would only add bytes.
            continue;
        }
        let Some((name, value)) = line.attribute() else {
            lines.push(line.clone());
            continue;
        };
        match name {
            "rtpmap" | "fmtp" | "rtcp-fb" => {
                let Some(value) = value else { continue };
                if name == "rtcp-fb" && value.starts_with('*') {
                    lines.push(line.clone());
                    continue;
                }
                let Some((src_pt, rest)) = leading_pt(value) else {
                    continue;
                };
                let Some(out_pt) = plan
                    .formats
                    .iter()
                    .find(|(_, s)| *s == src_pt)
                    .map(|(o, _)| *o)
                else {
                    continue;
                };
                let seen = match name {
                    "rtpmap" => Some(&mut rtpmap_seen),
                    "fmtp" => Some(&mut fmtp_seen),
                    _ => None,
                };
                if let Some(seen) = seen {
                    // A second rtpmap/fmtp for the same number would make it ambiguous (row 47).
                    if seen.contains(&src_pt) {
                        continue;
                    }
                    seen.push(src_pt);
                }
                if out_pt == src_pt {
                    lines.push(line.clone());
                } else {
                    lines.push(Line::new(b'a', format!("{name}:{out_pt} {rest}")));
                }
            }
            _ if is_direction(name, value) => {
                if !direction_written {
                    if let Some(d) = direction {
                        lines.push(Line::new(b'a', d.as_str()));
                    }
                    direction_written = true;
                }
            }
            _ if is_leg_attribute(name) => {}
            _ if plan.strip_vendor && name.starts_with("x-") => {}
            _ => lines.push(line.clone()),
        }
    }

    // A static type answered under a dynamic number of the offer needs the rtpmap it never had.
    for (out_pt, src_pt) in &plan.formats {
        if out_pt != src_pt && !rtpmap_seen.contains(src_pt) {
            if let Some(codec) = section.codec(*src_pt) {
                let mut value = String::with_capacity(32);
                let _ = write!(
                    value,
                    "rtpmap:{out_pt} {}/{}",
                    codec.encoding, codec.clock_rate
                );
                if codec.channels != 1 {
                    let _ = write!(value, "/{}", codec.channels);
                }
                lines.push(Line::new(b'a', value));
            }
        }
    }
    if let Some(pt) = plan.extra_event_pt {
        lines.push(Line::new(b'a', format!("rtpmap:{pt} telephone-event/8000")));
        lines.push(Line::new(b'a', format!("fmtp:{pt} 0-15")));
    }
    if let Some(pt) = plan.extra_cn_pt {
        lines.push(Line::new(b'a', format!("rtpmap:{pt} CN/8000")));
    }
    if plan.rtcp_mux {
        lines.push(Line::new(b'a', format!("rtcp:{port}")));
        lines.push(Line::new(b'a', "rtcp-mux"));
    }
    if let Some(crypto) = &plan.crypto {
        lines.push(Line::new(b'a', format!("crypto:{crypto}")));
    }
    if let Some(ice) = plan.ice {
        lines.push(Line::new(b'a', format!("ice-ufrag:{}", ice.ufrag)));
        lines.push(Line::new(b'a', format!("ice-pwd:{}", ice.pwd)));
        lines.push(Line::new(
            b'a',
            format!(
                "candidate:1 1 UDP 2130706431 {} {port} typ host",
                plan.local.ip()
            ),
        ));
    }
    if !direction_written {
        if let Some(d) = direction {
            lines.push(Line::new(b'a', d.as_str()));
        }
    }
    Some(MediaSection::from_lines(lines))
}

/// Direction written for the anchored stream. A `c=0.0.0.0` hold is turned into a direction
/// because the address itself is always replaced by ours (row 40).
fn output_direction(src: &Sdp, audio: usize, hold_as_inactive: bool) -> Option<Direction> {
    let written = src.direction_of(audio);
    let zero_address = src
        .connection_of(audio)
        .is_some_and(|c| c.is_hold_address());
    if hold_as_inactive {
        // Teams understands only sendrecv and inactive (row 39).
        return Some(match written {
            None | Some(Direction::SendRecv) if !zero_address => Direction::SendRecv,
            _ => Direction::Inactive,
        });
    }
    match (written, zero_address) {
        (Some(Direction::SendOnly), _) => Some(Direction::SendOnly),
        (_, true) => Some(Direction::Inactive),
        (written, false) => written,
    }
}

fn connection_line(ip: IpAddr) -> Line {
    let kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
    Line::new(b'c', format!("IN {kind} {ip}"))
}

/// `m=<media> 0 <proto> <formats>`, each format once even if the offer repeated one (row 47).
fn disabled_m_line(media: &str, proto: &str, formats: &str) -> Line {
    let mut m = String::with_capacity(media.len() + proto.len() + formats.len() + 4);
    let _ = write!(m, "{media} 0 {proto}");
    let tokens: SmallVec<[&str; 16]> = formats.split_ascii_whitespace().collect();
    for (i, token) in tokens.iter().enumerate() {
        if !tokens.iter().take(i).any(|earlier| earlier == token) {
            m.push(' ');
            m.push_str(token);
        }
    }
    Line::new(b'm', m)
}

fn mirror_slots(offer: &Sdp, anchored: usize) -> SmallVec<[Slot<'_>; 4]> {
    offer
        .media()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == anchored {
                Slot::Active
            } else {
                Slot::Disabled {
                    media: m.media_type(),
                    proto: Cow::Borrowed(m.profile()),
                    formats: m.format_list(),
                }
            }
        })
        .collect()
}

/// The `telephone-event` number to add towards Teams when the SBC converts in-band DTMF
/// (row 48): only if the carrier side kept G.711 (the tones we can hear) and no event codec.
/// An answer uses the number Teams offered (and adds nothing if Teams offered none); an offer
/// takes 101, or the first dynamic number the offer leaves free.
fn inband_event_pt(
    source: &MediaSection,
    formats: &[(u8, u8)],
    side: &TeamsSide<'_>,
    teams_offer: Option<&MediaSection>,
) -> Option<u8> {
    if !side.inband_dtmf || !side.codecs.allows("telephone-event") {
        return None;
    }
    let codecs = source.codecs();
    let kept = |name: &str| {
        formats.iter().any(|(_, src)| {
            codecs.iter().any(|c| {
                c.pt == *src && c.clock_rate == 8000 && c.encoding.eq_ignore_ascii_case(name)
            })
        })
    };
    if kept("telephone-event") || !(kept("PCMU") || kept("PCMA")) {
        return None;
    }
    match teams_offer {
        Some(offer) => offer
            .codecs()
            .iter()
            .find(|c| c.encoding.eq_ignore_ascii_case("telephone-event") && c.clock_rate == 8000)
            .map(|c| c.pt)
            .filter(|pt| !formats.iter().any(|(out, _)| out == pt)),
        None => std::iter::once(101)
            .chain(96..=127)
            .find(|pt| !formats.iter().any(|(out, _)| out == pt)),
    }
}

/// The `CN/8000` number to add towards Teams when the SBC makes comfort noise for the carrier
/// (row 49): only if the carrier side kept G.711 (the noise is made in it) and no CN. An
/// answer uses the number Teams offered (and adds nothing if Teams offered none); an offer
/// takes the static 13, or the first dynamic number left free.
fn comfort_noise_pt(
    source: &MediaSection,
    formats: &[(u8, u8)],
    event_pt: Option<u8>,
    side: &TeamsSide<'_>,
    teams_offer: Option<&MediaSection>,
) -> Option<u8> {
    if !side.comfort_noise || !side.codecs.allows("CN") {
        return None;
    }
    let codecs = source.codecs();
    let kept = |name: &str| {
        formats.iter().any(|(_, src)| {
            codecs.iter().any(|c| {
                c.pt == *src && c.clock_rate == 8000 && c.encoding.eq_ignore_ascii_case(name)
            })
        })
    };
    if kept("CN") || !(kept("PCMU") || kept("PCMA")) {
        return None;
    }
    let free = |pt: &u8| Some(*pt) != event_pt && !formats.iter().any(|(out, _)| out == pt);
    match teams_offer {
        Some(offer) => offer
            .codecs()
            .iter()
            .find(|c| c.encoding.eq_ignore_ascii_case("CN") && c.clock_rate == 8000)
            .map(|c| c.pt)
            .filter(free),
        None => std::iter::once(13).chain(96..=127).find(free),
    }
}

/// Offered formats kept: allowed by `codecs`, known encoding, each number once (row 47), and
/// telephone-event only at the clock rate of a kept voice codec (row 48).
fn offer_formats(
    section: &MediaSection,
    codecs: &CodecList,
) -> Result<SmallVec<[(u8, u8); 16]>, SdpError> {
    let offered = section.codecs();
    let kept: SmallVec<[&Codec<'_>; 16]> = offered
        .iter()
        .filter(|c| codecs.allows(c.encoding))
        .collect();
    let out: SmallVec<[(u8, u8); 16]> = kept
        .iter()
        .filter(|c| events_fit(c, &kept))
        .map(|c| (c.pt, c.pt))
        .collect();
    if out.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    Ok(out)
}

/// RFC 4733 §2.1: events are timed on the RTP clock of the audio they go with, so
/// `telephone-event` at a rate no voice codec of the stream has (`telephone-event/16000`
/// next to G.711, G.722, G.729, which run an 8000 Hz RTP clock) describes nothing either
/// leg can send: it is left out, and only the rate that fits crosses (`/16000` stays next to
/// SILK/16000 where a leg carries it). Every other format fits.
fn events_fit(codec: &Codec<'_>, formats: &[&Codec<'_>]) -> bool {
    let is_event = |c: &Codec<'_>| c.encoding.eq_ignore_ascii_case("telephone-event");
    let is_voice = |c: &Codec<'_>| !is_event(c) && !c.encoding.eq_ignore_ascii_case("CN");
    !is_event(codec)
        || formats
            .iter()
            .any(|c| is_voice(c) && c.clock_rate == codec.clock_rate)
}

/// Answered formats: those of the source answer that the offer also carries, written with the
/// offer's payload type numbers (RFC 3264 §6.1), each number once.
fn answer_formats(
    answer: &MediaSection,
    offer: &MediaSection,
    codecs: &CodecList,
) -> Result<SmallVec<[(u8, u8); 16]>, SdpError> {
    let offered = offer.codecs();
    let answered = answer.codecs();
    let allowed: SmallVec<[&Codec<'_>; 16]> = answered
        .iter()
        .filter(|c| codecs.allows(c.encoding))
        .collect();
    let mut out: SmallVec<[(u8, u8); 16]> = SmallVec::new();
    for codec in allowed.iter().filter(|c| events_fit(c, &allowed)) {
        if let Some(target) = matching_pt(&offered, codec) {
            if !out.iter().any(|(o, _)| *o == target) {
                out.push((target, codec.pt));
            }
        }
    }
    if out.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    Ok(out)
}

fn secure_profile(profile: &str) -> &str {
    match profile {
        "RTP/AVP" => "RTP/SAVP",
        "RTP/AVPF" => "RTP/SAVPF",
        other => other,
    }
}

/// The profile of an SDES answer: `UDP/TLS/` (DTLS-SRTP keying) dropped, the rest kept.
fn sdes_profile(profile: &str) -> &str {
    profile
        .strip_prefix("UDP/TLS/")
        .filter(|rest| rest.starts_with("RTP/SAVP"))
        .unwrap_or(profile)
}

fn plain_profile(profile: &str) -> &'static str {
    if profile.ends_with("SAVPF") || profile.ends_with("AVPF") {
        "RTP/AVPF"
    } else {
        "RTP/AVP"
    }
}

/// Row 48: telephone-event crosses every rewrite, under the number each leg negotiated.
#[cfg(test)]
mod dtmf_tests {
    use super::*;

    const TEAMS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";

    fn sdp(text: &str) -> Sdp {
        Sdp::parse(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    fn carrier_sdp(formats: &str, te_pt: u8) -> Sdp {
        sdp(&format!(
            "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
             m=audio 16384 RTP/AVP {formats}\na=rtpmap:0 PCMU/8000\n\
             a=rtpmap:{te_pt} telephone-event/8000\na=fmtp:{te_pt} 0-16\na=sendrecv\n"
        ))
    }

    fn teams_sdp(formats: &str, te_pt: u8) -> Sdp {
        sdp(&format!(
            "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
             m=audio 52884 RTP/SAVP {formats}\na=rtpmap:0 PCMU/8000\n\
             a=rtpmap:{te_pt} telephone-event/8000\na=fmtp:{te_pt} 0-15\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY}|2^31\na=rtcp-mux\na=sendrecv\n"
        ))
    }

    struct Sides {
        key: SdesKey,
        teams_codecs: CodecList,
        carrier_codecs: CodecList,
    }

    impl Sides {
        fn new() -> Sides {
            Sides {
                key: SdesKey::generate(),
                teams_codecs: CodecList::teams_default(),
                carrier_codecs: CodecList::new(["PCMU", "PCMA", "telephone-event"]),
            }
        }

        fn teams(&self) -> TeamsSide<'_> {
            TeamsSide {
                local: "203.0.113.10:40000".parse().unwrap(),
                key: &self.key,
                ice: None,
                codecs: &self.teams_codecs,
                inband_dtmf: false,
                comfort_noise: false,
            }
        }

        fn carrier(&self) -> CarrierSide<'_> {
            CarrierSide {
                local: "10.1.1.1:30000".parse().unwrap(),
                codecs: &self.carrier_codecs,
                offer_rtcp_mux: false,
                strip_vendor_attributes: true,
            }
        }
    }

    fn origin() -> LegOrigin {
        LegOrigin::new(1, "203.0.113.10".parse().unwrap())
    }

    fn telephone_event(m: &MediaSection) -> Vec<(u8, Option<String>)> {
        m.rtpmaps()
            .filter(|c| c.encoding.eq_ignore_ascii_case("telephone-event"))
            .map(|c| (c.pt, m.fmtp(c.pt).map(str::to_owned)))
            .collect()
    }

    #[test]
    fn row48_pstn_to_teams_offer_keeps_101_and_answer_to_carrier_renumbers_teams_96() {
        let s = Sides::new();
        let carrier_offer = carrier_sdp("0 101", 101);
        let to_teams = offer_towards_teams(&carrier_offer, &s.teams(), &mut origin()).unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "0 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-16".into()))]);

        let teams_answer = teams_sdp("0 96", 96);
        let to_carrier =
            answer_towards_carrier(&teams_answer, &carrier_offer, &s.carrier(), &mut origin())
                .unwrap();
        let m = &to_carrier.media()[0];
        assert_eq!(m.format_list(), "0 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-15".into()))]);
        assert!(m.rtpmaps().all(|c| c.pt != 96), "{to_carrier:?}");
    }

    #[test]
    fn row48_teams_to_pstn_offer_keeps_127_and_answer_to_teams_renumbers_carrier_101() {
        let s = Sides::new();
        let teams_offer = teams_sdp("0 127", 127);
        let to_carrier = offer_towards_carrier(&teams_offer, &s.carrier(), &mut origin()).unwrap();
        let m = &to_carrier.media()[0];
        assert_eq!(m.format_list(), "0 127");
        assert_eq!(telephone_event(m), vec![(127, Some("0-15".into()))]);

        let carrier_answer = carrier_sdp("0 101", 101);
        let to_teams =
            answer_towards_teams(&carrier_answer, &teams_offer, &s.teams(), &mut origin()).unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "0 127");
        assert_eq!(telephone_event(m), vec![(127, Some("0-16".into()))]);
    }

    #[test]
    fn row48_telephone_event_dropped_only_when_a_leg_does_not_allow_it() {
        let s = Sides::new();
        let no_dtmf = CodecList::new(["PCMU"]);
        let side = CarrierSide {
            codecs: &no_dtmf,
            ..s.carrier()
        };
        let to_carrier =
            offer_towards_carrier(&teams_sdp("0 101", 101), &side, &mut origin()).unwrap();
        let m = &to_carrier.media()[0];
        assert_eq!(m.format_list(), "0");
        assert!(telephone_event(m).is_empty());
        assert!(m.fmtp(101).is_none());
    }

    /// Teams' offer with events at 8000 Hz (101) and 16000 Hz (102) besides G.711, as a
    /// Teams endpoint with SILK/16000 may write it.
    fn teams_offer_two_event_rates(extra_formats: &str, extra_lines: &str) -> Sdp {
        sdp(&format!(
            "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
             m=audio 52884 RTP/SAVP {extra_formats}0 8 101 102\n{extra_lines}\
             a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n\
             a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n\
             a=rtpmap:102 telephone-event/16000\na=fmtp:102 0-16\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{TEAMS_KEY}|2^31\na=rtcp-mux\n"
        ))
    }

    /// Row 48, telephone-event/16000: events run on the RTP clock of the audio they go with
    /// (RFC 4733 §2.1). Next to G.711 only the 8000 Hz event crosses to the carrier, with its
    /// fmtp; the 16000 Hz one and its lines stay behind. Next to SILK/16000 (a trunk that
    /// carries SILK) both rates cross.
    #[test]
    fn row48_telephone_event_16000_crosses_only_next_to_a_16000_hz_voice_codec() {
        let s = Sides::new();
        let offer = teams_offer_two_event_rates("", "");
        let to_carrier = offer_towards_carrier(&offer, &s.carrier(), &mut origin()).unwrap();
        let m = &to_carrier.media()[0];
        assert_eq!(m.format_list(), "0 8 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-16".into()))]);
        assert!(m.fmtp(102).is_none(), "{to_carrier:?}");

        let silk_trunk = CodecList::new(["SILK", "PCMU", "telephone-event"]);
        let side = CarrierSide {
            codecs: &silk_trunk,
            ..s.carrier()
        };
        let offer = teams_offer_two_event_rates("104 ", "a=rtpmap:104 SILK/16000\n");
        let to_carrier = offer_towards_carrier(&offer, &side, &mut origin()).unwrap();
        assert_eq!(to_carrier.media()[0].format_list(), "104 0 101 102");

        // A carrier that writes telephone-event/16000 next to G.722 (whose RTP clock is
        // 8000 Hz): Teams is offered no such event; with in-band conversion on, our own
        // 8000 Hz event under a free number instead.
        let g722 = sdp(
            "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
             m=audio 16384 RTP/AVP 9 8 102\na=rtpmap:9 G722/8000\na=rtpmap:8 PCMA/8000\n\
             a=rtpmap:102 telephone-event/16000\na=fmtp:102 0-16\na=sendrecv\n",
        );
        let to_teams = offer_towards_teams(&g722, &s.teams(), &mut origin()).unwrap();
        assert_eq!(to_teams.media()[0].format_list(), "9 8");
        let side = TeamsSide {
            inband_dtmf: true,
            ..s.teams()
        };
        let to_teams = offer_towards_teams(&g722, &side, &mut origin()).unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "9 8 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-15".into()))]);
    }

    /// Row 48, telephone-event/16000 in answers: the carrier answers Teams' two-rate offer
    /// (as we relayed it, 8000 Hz only) with events; Teams' answer carries events under its
    /// 8000 Hz number, never the 16000 Hz one. A carrier answering /16000 next to G.711 (it
    /// was never offered) gets it dropped too.
    #[test]
    fn row48_answer_to_teams_uses_the_8000_hz_event_number() {
        let s = Sides::new();
        let offer = teams_offer_two_event_rates("", "");
        let to_teams = answer_towards_teams(
            &carrier_sdp("0 101", 101),
            &offer,
            &s.teams(),
            &mut origin(),
        )
        .unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "0 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-16".into()))]);

        let odd = sdp(
            "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
             m=audio 16384 RTP/AVP 0 102\na=rtpmap:0 PCMU/8000\n\
             a=rtpmap:102 telephone-event/16000\na=sendrecv\n",
        );
        let to_teams = answer_towards_teams(&odd, &offer, &s.teams(), &mut origin()).unwrap();
        assert_eq!(to_teams.media()[0].format_list(), "0");
    }

    fn g711_only(formats: &str) -> Sdp {
        sdp(&format!(
            "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
             m=audio 16384 RTP/AVP {formats}\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n\
             a=rtpmap:18 G729/8000\na=sendrecv\n"
        ))
    }

    #[test]
    fn row48_inband_carrier_gets_telephone_event_offered_to_teams_under_a_free_number() {
        let s = Sides::new();
        let side = TeamsSide {
            inband_dtmf: true,
            ..s.teams()
        };
        let to_teams = offer_towards_teams(&g711_only("8 0"), &side, &mut origin()).unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "8 0 101");
        assert_eq!(telephone_event(m), vec![(101, Some("0-15".into()))]);
        // Off: the carrier's formats only, as before.
        let plain = offer_towards_teams(&g711_only("8 0"), &s.teams(), &mut origin()).unwrap();
        assert_eq!(plain.media()[0].format_list(), "8 0");
        // The carrier has its own events: nothing added, its number kept.
        let with_events =
            offer_towards_teams(&carrier_sdp("0 101", 101), &side, &mut origin()).unwrap();
        assert_eq!(with_events.media()[0].format_list(), "0 101");
        // Only G.729 (no tones we could hear): nothing added.
        let g729 = offer_towards_teams(&g711_only("18"), &side, &mut origin()).unwrap();
        assert_eq!(g729.media()[0].format_list(), "18");
    }

    #[test]
    fn row48_inband_carrier_answer_to_teams_keeps_the_event_number_teams_offered() {
        let s = Sides::new();
        let side = TeamsSide {
            inband_dtmf: true,
            ..s.teams()
        };
        let teams_offer = teams_sdp("0 127", 127);
        let to_teams =
            answer_towards_teams(&g711_only("0"), &teams_offer, &side, &mut origin()).unwrap();
        let m = &to_teams.media()[0];
        assert_eq!(m.format_list(), "0 127");
        assert_eq!(telephone_event(m), vec![(127, Some("0-15".into()))]);
        // A Teams offer without events gets none back.
        let bare = sdp(
            "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
             m=audio 52884 RTP/SAVP 0\na=rtpmap:0 PCMU/8000\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n\
             a=rtcp-mux\na=sendrecv\n",
        );
        let to_teams = answer_towards_teams(&g711_only("0"), &bare, &side, &mut origin()).unwrap();
        assert_eq!(to_teams.media()[0].format_list(), "0");
    }
}

/// Row 49: CN/8000 towards Teams on behalf of a carrier that has none (the SBC makes the
/// noise for it).
#[cfg(test)]
mod comfort_noise_tests {
    use super::*;

    fn sdp(text: &str) -> Sdp {
        Sdp::parse(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    fn carrier(formats: &str, maps: &str) -> Sdp {
        sdp(&format!(
            "v=0\no=pstn 1 1 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\n\
             m=audio 16384 RTP/AVP {formats}\n{maps}a=sendrecv\n"
        ))
    }

    fn teams_offer(formats: &str, maps: &str) -> Sdp {
        sdp(&format!(
            "v=0\no=- 1 1 IN IP4 52.114.7.24\ns=-\nc=IN IP4 52.114.7.24\nt=0 0\n\
             m=audio 52884 RTP/SAVP {formats}\n{maps}\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^31\n\
             a=rtcp-mux\na=sendrecv\n"
        ))
    }

    const G711: &str = "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n";

    fn cn_lines(m: &MediaSection) -> Vec<u8> {
        m.rtpmaps()
            .filter(|c| c.encoding.eq_ignore_ascii_case("CN"))
            .map(|c| c.pt)
            .collect()
    }

    fn side<'a>(key: &'a SdesKey, codecs: &'a CodecList, comfort_noise: bool) -> TeamsSide<'a> {
        TeamsSide {
            local: "203.0.113.10:40000".parse().unwrap(),
            key,
            ice: None,
            codecs,
            inband_dtmf: true,
            comfort_noise,
        }
    }

    fn origin() -> LegOrigin {
        LegOrigin::new(1, "203.0.113.10".parse().unwrap())
    }

    #[test]
    fn row49_teams_is_offered_cn_13_when_the_carrier_has_none() {
        let (key, codecs) = (SdesKey::generate(), CodecList::teams_default());
        let offer = carrier("0 8", G711);
        let out = offer_towards_teams(&offer, &side(&key, &codecs, true), &mut origin()).unwrap();
        let m = &out.media()[0];
        assert_eq!(
            m.format_list(),
            "0 8 101 13",
            "after the DTMF the SBC also makes"
        );
        assert_eq!(cn_lines(m), vec![13]);
        // Off, or nothing the SBC could make noise in (G.729 only): as the carrier offered.
        let off = offer_towards_teams(&offer, &side(&key, &codecs, false), &mut origin()).unwrap();
        assert_eq!(off.media()[0].format_list(), "0 8 101");
        let g729 = carrier("18", "a=rtpmap:18 G729/8000\n");
        let out = offer_towards_teams(&g729, &side(&key, &codecs, true), &mut origin()).unwrap();
        assert_eq!(out.media()[0].format_list(), "18");
        // A carrier with its own CN keeps it, once.
        let with_cn = carrier("0 13", "a=rtpmap:0 PCMU/8000\na=rtpmap:13 CN/8000\n");
        let out = offer_towards_teams(&with_cn, &side(&key, &codecs, true), &mut origin()).unwrap();
        assert_eq!(out.media()[0].format_list(), "0 13 101");
        assert_eq!(cn_lines(&out.media()[0]), vec![13]);
    }

    #[test]
    fn row49_answer_to_teams_keeps_the_cn_number_teams_offered() {
        let (key, codecs) = (SdesKey::generate(), CodecList::teams_default());
        let offered = teams_offer(
            "0 118 13",
            "a=rtpmap:0 PCMU/8000\na=rtpmap:118 CN/16000\na=rtpmap:13 CN/8000\n",
        );
        let answer = carrier("0", "a=rtpmap:0 PCMU/8000\n");
        let out =
            answer_towards_teams(&answer, &offered, &side(&key, &codecs, true), &mut origin())
                .unwrap();
        assert_eq!(out.media()[0].format_list(), "0 13");
        // Teams offered no CN: none in the answer.
        let bare = teams_offer("0", "a=rtpmap:0 PCMU/8000\n");
        let out = answer_towards_teams(&answer, &bare, &side(&key, &codecs, true), &mut origin())
            .unwrap();
        assert_eq!(out.media()[0].format_list(), "0");
    }

    /// The carrier side never gets CN it did not offer: Teams' CN is answered for it only
    /// if the carrier's answer carries it.
    #[test]
    fn row49_carrier_answer_has_cn_only_when_the_carrier_offered_it() {
        let codecs = CodecList::carrier_default();
        let carrier_side = CarrierSide {
            local: "10.1.1.1:30000".parse().unwrap(),
            codecs: &codecs,
            offer_rtcp_mux: false,
            strip_vendor_attributes: true,
        };
        let teams_answer = teams_offer("0 13", "a=rtpmap:0 PCMU/8000\na=rtpmap:13 CN/8000\n");
        let offer = carrier("0", "a=rtpmap:0 PCMU/8000\n");
        let out =
            answer_towards_carrier(&teams_answer, &offer, &carrier_side, &mut origin()).unwrap();
        assert_eq!(out.media()[0].format_list(), "0");
        assert!(cn_lines(&out.media()[0]).is_empty());
    }
}
