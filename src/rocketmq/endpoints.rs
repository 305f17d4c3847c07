//! Which proxy ports stand for which real broker: the one place that
//! decides the broker addresses and names clients see.
//!
//! Every real broker address of either cluster (masters and slaves) gets an
//! endpoint, assigned in the order addresses are learnt (the start-up
//! cluster-info probe sorts them, so a restart against the same clusters
//! gives the same ports). An endpoint has two ports: the advertised one and
//! the VIP-channel port two below it, which Java clients with
//! `vipChannelEnabled` derive from the advertised address; both lead to the
//! same upstream broker. Target broker names get the configured suffix so
//! they never collide with a source broker's name.

use crate::config::rocketmq_broker_ports;

pub use crate::proxy::Side;

/// One real broker and the proxy ports standing for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its cluster.
    pub side: Side,
    /// The broker's address as its NameServer advertises it.
    pub upstream: String,
    /// The broker's real name.
    pub real_name: String,
    /// The name clients see (real name, suffixed on the target side).
    pub virtual_name: String,
    /// The port clients are told.
    pub port: u16,
    /// The VIP-channel port (`port − 2`).
    pub vip_port: u16,
}

/// What [`EndpointMap::assign`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The broker already had an endpoint.
    Known(Endpoint),
    /// A new endpoint was assigned; its listeners must be opened before a
    /// client is told about it.
    New(Endpoint),
}

/// No room for another broker.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Every reserved port pair is taken.
    #[error(
        "{side} broker {name} at {addr} cannot be advertised: all {max} reserved broker endpoints are in use (raise rocketmq.max_brokers)"
    )]
    Full {
        /// Cluster side.
        side: &'static str,
        /// Broker name.
        name: String,
        /// Broker address.
        addr: String,
        /// `rocketmq.max_brokers`.
        max: u16,
    },
    /// A listener could not be bound.
    #[error("cannot listen on port {port} for broker {name} at {addr}: {source}")]
    Bind {
        /// Broker name.
        name: String,
        /// Broker address.
        addr: String,
        /// The port.
        port: u16,
        /// OS error.
        source: std::io::Error,
    },
}

/// (side, broker address) → endpoint, for one migration.
#[derive(Debug)]
pub struct EndpointMap {
    base: u16,
    max: u16,
    suffix: String,
    endpoints: Vec<Endpoint>,
}

impl EndpointMap {
    /// An empty map handing out `max` port pairs from `base` on; target
    /// broker names get `suffix`.
    #[must_use]
    pub fn new(base: u16, max: u16, suffix: &str) -> Self {
        EndpointMap {
            base,
            max,
            suffix: suffix.to_owned(),
            endpoints: Vec::new(),
        }
    }

    /// The name clients see for `real_name` of `side`.
    #[must_use]
    pub fn virtual_name(&self, side: Side, real_name: &str) -> String {
        match side {
            Side::Source => real_name.to_owned(),
            Side::Target => format!("{real_name}{}", self.suffix),
        }
    }

    /// The endpoint of `upstream` on `side`, if it has one.
    #[must_use]
    pub fn get(&self, side: Side, upstream: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.side == side && e.upstream == upstream)
    }

    /// Every endpoint, in assignment order.
    #[must_use]
    pub fn all(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint for broker `real_name` at `upstream` on `side`.
    ///
    /// # Errors
    /// [`EndpointError::Full`] when all reserved ports are taken.
    pub fn assign(
        &mut self,
        side: Side,
        upstream: &str,
        real_name: &str,
    ) -> Result<Assignment, EndpointError> {
        if let Some(known) = self.get(side, upstream) {
            return Ok(Assignment::Known(known.clone()));
        }
        let full = || EndpointError::Full {
            side: side.as_str(),
            name: real_name.to_owned(),
            addr: upstream.to_owned(),
            max: self.max,
        };
        let index = u16::try_from(self.endpoints.len()).map_err(|_| full())?;
        if index >= self.max {
            return Err(full());
        }
        let (port, vip_port) = rocketmq_broker_ports(self.base, index).ok_or_else(full)?;
        let endpoint = Endpoint {
            side,
            upstream: upstream.to_owned(),
            real_name: real_name.to_owned(),
            virtual_name: self.virtual_name(side, real_name),
            port,
            vip_port,
        };
        self.endpoints.push(endpoint.clone());
        Ok(Assignment::New(endpoint))
    }

    /// Forgets an endpoint whose listeners could not be opened, so a later
    /// attempt can try again. Only the last assignment can be forgotten
    /// without moving other brokers' ports.
    pub fn remove_last(&mut self, side: Side, upstream: &str) {
        if self
            .endpoints
            .last()
            .is_some_and(|e| e.side == side && e.upstream == upstream)
        {
            self.endpoints.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_stable_and_target_names_suffixed() {
        let mut map = EndpointMap::new(1000, 2, "-t");
        let Assignment::New(a) = map.assign(Side::Source, "h:1", "broker-a").unwrap() else {
            panic!("new");
        };
        assert_eq!((a.port, a.vip_port), (1002, 1000));
        assert_eq!(a.virtual_name, "broker-a");
        let Assignment::New(b) = map.assign(Side::Target, "h:2", "broker-a").unwrap() else {
            panic!("new");
        };
        assert_eq!((b.port, b.vip_port), (1003, 1001));
        assert_eq!(b.virtual_name, "broker-a-t");
        assert_eq!(
            map.assign(Side::Source, "h:1", "broker-a").unwrap(),
            Assignment::Known(a)
        );
        // The same address on the other side is another broker.
        let err = map.assign(Side::Source, "h:2", "x").unwrap_err();
        assert!(
            err.to_string().contains("raise rocketmq.max_brokers"),
            "{err}"
        );
        map.remove_last(Side::Target, "h:2");
        assert_eq!(map.all().len(), 1);
    }
}
