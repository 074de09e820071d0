//! Deciding whether a host may be reached and connecting to it. Names are
//! resolved on the host; every address is checked, and if any is blocked the
//! request is refused (a name that mixes public and private answers is a
//! rebinding attempt, not a dual-stack site). The connection goes to one of
//! exactly the addresses checked — never to a name resolved again.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::address::{AddressClass, classify};
use crate::domain::{DomainDecision, Host};
use crate::proxy::Inner;
use crate::refusal::{Refusal, rule_label};

impl Inner {
    /// Whether the rules allow `host`; Ok carries the deciding rule's label.
    pub(crate) fn decide(&self, host: &Host) -> Result<Option<String>, Refusal> {
        let decision = self.domains.decide(host);
        if let DomainDecision::Denied(rule) = decision {
            return Err(Refusal::DeniedByRule {
                host: host.clone(),
                pattern: rule.pattern.clone(),
                origin: rule.origin.clone(),
            });
        }
        match host {
            Host::Name(_) => match decision {
                DomainDecision::Allowed(rule) => Ok(Some(rule_label(&rule.pattern, &rule.origin))),
                DomainDecision::Denied(_) | DomainDecision::NotListed => {
                    Err(Refusal::NotListed { host: host.clone() })
                }
            },
            // An IP literal is allowed by a rule naming it: a domain rule for a
            // public address, an address rule for a non-public one.
            Host::Ip(ip) => match classify(ip.to_canonical()) {
                AddressClass::Public => match decision {
                    DomainDecision::Allowed(rule) => {
                        Ok(Some(rule_label(&rule.pattern, &rule.origin)))
                    }
                    DomainDecision::Denied(_) | DomainDecision::NotListed => {
                        Err(Refusal::NotListed { host: host.clone() })
                    }
                },
                _ => match self.addresses.check(*ip) {
                    Ok(rule) => Ok(rule.map(|r| rule_label(&r.pattern, &r.origin))),
                    Err(blocked) => Err(Refusal::BlockedAddress {
                        host: host.clone(),
                        ip: blocked.ip,
                        class: blocked.class,
                    }),
                },
            },
        }
    }

    /// Resolves `host`, checks every address, and connects to the first
    /// checked address that answers, all within the connect timeout.
    pub(crate) async fn open(
        &self,
        host: &Host,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), Refusal> {
        let deadline = Instant::now() + self.limits.connect_timeout;
        let timed_out = || Refusal::Timeout {
            host: host.clone(),
            port,
        };
        let candidates: Vec<IpAddr> = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => match timeout_at(deadline, self.resolver.resolve(name)).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(e)) => {
                    return Err(Refusal::ResolveFailed {
                        host: host.clone(),
                        why: e.to_string(),
                    });
                }
                Ok(Ok(ips)) if ips.is_empty() => {
                    return Err(Refusal::ResolveFailed {
                        host: host.clone(),
                        why: "the name has no addresses".into(),
                    });
                }
                Ok(Ok(ips)) => ips,
            },
        };
        let mut checked = Vec::with_capacity(candidates.len());
        for ip in candidates {
            match self.addresses.check(ip) {
                Ok(_) => checked.push(SocketAddr::new(ip.to_canonical(), port)),
                Err(blocked) => {
                    return Err(Refusal::BlockedAddress {
                        host: host.clone(),
                        ip: blocked.ip,
                        class: blocked.class,
                    });
                }
            }
        }
        let mut last_error = String::from("no address to try");
        for addr in checked {
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(stream)) => {
                    // Interactive protocols through the tunnel should not wait on Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(e)) => last_error = format!("{addr}: {e}"),
            }
        }
        Err(Refusal::ConnectFailed {
            host: host.clone(),
            port,
            why: last_error,
        })
    }
}
