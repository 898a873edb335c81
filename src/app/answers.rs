//! What the SBC says about itself in answers (Contact FQDN, X-MS-SBC, Server) and the final
//! responses it gives while no call layer exists.

use bytes::Bytes;

use crate::config::Loaded;
use crate::health::{self, ProductHeaders, SbcIdentity, SipTransport};
use crate::sip::{HeaderName, Message, ResponseBuilder};
use crate::transaction::new_tag;
use crate::transport::{Peer, Source, TransportHandle, TransportKind};

/// What goes into Contact / X-MS-SBC of our answers, per listener.
#[derive(Clone)]
pub(super) struct IdentityTemplate {
    base_fqdn: String,
    tenant_fqdns: Vec<String>,
    microsoft: ProductHeaders,
    carrier: ProductHeaders,
    signaling_port: u16,
    /// First listener port of each transport, for Contact of pings sent over it.
    ports: Vec<(TransportKind, u16)>,
}

impl IdentityTemplate {
    pub(super) fn new(loaded: &Loaded, transport: &TransportHandle) -> IdentityTemplate {
        let mut ports = Vec::new();
        for (kind, addr) in transport.local_addrs() {
            if !ports.iter().any(|(k, _)| *k == kind) {
                ports.push((kind, addr.port()));
            }
        }
        IdentityTemplate {
            base_fqdn: loaded.config.sbc.base_fqdn.clone(),
            tenant_fqdns: loaded
                .config
                .tenants
                .iter()
                .map(|t| t.fqdn.clone())
                .collect(),
            microsoft: loaded.microsoft_product(),
            carrier: loaded.carrier_product(),
            signaling_port: loaded.config.sbc.sip_signaling_port,
            ports,
        }
    }

    pub(super) fn make(
        &self,
        fqdn: &str,
        port: u16,
        transport: SipTransport,
        to_microsoft: bool,
    ) -> SbcIdentity {
        SbcIdentity {
            fqdn: fqdn.to_string(),
            port,
            transport,
            product: if to_microsoft {
                self.microsoft.clone()
            } else {
                self.carrier.clone()
            },
        }
    }

    /// Identity for answering `request` that arrived at `source`: the tenant FQDN when the
    /// Request-URI names one (keeps a derived trunk's FQDN stable, doc 4.3), else the base.
    pub(super) fn for_request(&self, request: &Message, source: &Source) -> SbcIdentity {
        let host = request
            .request_uri()
            .and_then(|uri| uri.as_sip())
            .map(|sip| String::from_utf8_lossy(&sip.host).to_string());
        let fqdn = host
            .and_then(|h| {
                self.tenant_fqdns
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(&h))
                    .cloned()
            })
            .unwrap_or_else(|| self.base_fqdn.clone());
        self.make(
            &fqdn,
            source.local.port(),
            sip_transport(source.kind),
            source.peer == Some(Peer::Microsoft),
        )
    }

    /// Identity for pings sent over `kind` to Microsoft or a carrier: TLS uses the
    /// SipSignalingPort Teams knows.
    pub(super) fn for_ping(&self, kind: TransportKind, to_microsoft: bool) -> SbcIdentity {
        let port = if kind == TransportKind::Tls {
            self.signaling_port
        } else {
            self.ports
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, p)| *p)
                .unwrap_or(kind.default_port())
        };
        self.make(&self.base_fqdn, port, sip_transport(kind), to_microsoft)
    }
}

pub(super) fn sip_transport(kind: TransportKind) -> SipTransport {
    match kind {
        TransportKind::Udp => SipTransport::Udp,
        TransportKind::Tcp => SipTransport::Tcp,
        TransportKind::Tls => SipTransport::Tls,
    }
}

pub(super) fn transport_of(kind: SipTransport) -> TransportKind {
    match kind {
        SipTransport::Udp => TransportKind::Udp,
        SipTransport::Tcp => TransportKind::Tcp,
        SipTransport::Tls => TransportKind::Tls,
    }
}

/// A final response with a To tag and the product headers for the peer (row 59).
pub(super) fn final_response(
    request: &Message,
    status: u16,
    reason: &str,
    id: &SbcIdentity,
) -> Bytes {
    response_builder(request, status, reason, id).build()
}

pub(super) fn with_allow(request: &Message, status: u16, reason: &str, id: &SbcIdentity) -> Bytes {
    response_builder(request, status, reason, id)
        .header(&HeaderName::Allow, health::ALLOW_METHODS.as_bytes())
        .build()
}

pub(super) fn response_builder(
    request: &Message,
    status: u16,
    reason: &str,
    id: &SbcIdentity,
) -> ResponseBuilder {
    let has_tag = request
        .to()
        .ok()
        .is_some_and(|to| to.param("tag").is_some());
    let mut builder = ResponseBuilder::new(request, status, reason);
    if !has_tag {
        builder = builder.to_tag(&new_tag());
    }
    id.product.to_response(builder)
}
