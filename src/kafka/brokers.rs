//! Which proxy port stands for which upstream broker: the one place that
//! decides the brokers clients see.
//!
//! Today each *source* broker gets its own door (listener) at
//! `brokers_listen_base + i`, assigned in the order node ids are learnt (the
//! start-up Metadata probe sorts them, so a restart against the same cluster
//! gives the same ports), and a client connection on that door is paired
//! with one upstream connection to that broker. DESIGN.md §2's *virtual*
//! brokers (a fixed number of doors, partitions routed inside each door to
//! whichever upstream owns them) replace this module; sessions only ask it
//! "which port for node N" and "which upstream behind port P".
//!
//! Unknown node ids met later (a broker added to the cluster) get the next
//! free door lazily; past `max_brokers` the response naming them is refused
//! and the client connection closed with a logged reason, because
//! advertising a broker the proxy cannot serve would send the client
//! straight to the source and around the migration.

/// One door: a proxy port standing for an upstream broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Door {
    /// The upstream broker's node id.
    pub node_id: i32,
    /// The proxy port clients are told for it.
    pub port: u16,
    /// The broker's address as the cluster last advertised it (`host:port`).
    pub upstream: String,
}

/// What [`BrokerMap::assign`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The node already had a door (its upstream address may have been updated).
    Known(u16),
    /// A new door was assigned; its listener must be opened before a client
    /// is told about it.
    New(u16),
}

impl Assignment {
    /// The port, either way.
    #[must_use]
    pub fn port(self) -> u16 {
        match self {
            Assignment::Known(p) | Assignment::New(p) => p,
        }
    }
}

/// A broker could not be given a door.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Every reserved port is taken.
    #[error(
        "broker {node_id} cannot be advertised: all {max} reserved broker ports are in use (raise kafka.max_brokers)"
    )]
    Full {
        /// The node id that found no room.
        node_id: i32,
        /// `kafka.max_brokers`.
        max: u16,
    },
    /// The listener for a new door could not be bound.
    #[error("cannot listen on port {port} for broker {node_id}: {source}")]
    Bind {
        /// The node id.
        node_id: i32,
        /// The port.
        port: u16,
        /// OS error.
        source: std::io::Error,
    },
}

/// Node id → door, for one migration.
#[derive(Debug)]
pub struct BrokerMap {
    base: u16,
    max: u16,
    doors: Vec<Door>,
}

impl BrokerMap {
    /// An empty map handing out `max` ports from `base` on.
    #[must_use]
    pub fn new(base: u16, max: u16) -> Self {
        BrokerMap {
            base,
            max,
            doors: Vec::new(),
        }
    }

    /// The door of `node_id`, if it has one.
    #[must_use]
    pub fn door(&self, node_id: i32) -> Option<&Door> {
        self.doors.iter().find(|d| d.node_id == node_id)
    }

    /// Every door, in port order.
    #[must_use]
    pub fn doors(&self) -> &[Door] {
        &self.doors
    }

    /// The door for `node_id`, recording `upstream` as its current address.
    ///
    /// # Errors
    /// [`BrokerError::Full`] when all reserved ports are taken.
    pub fn assign(&mut self, node_id: i32, upstream: &str) -> Result<Assignment, BrokerError> {
        if let Some(door) = self.doors.iter_mut().find(|d| d.node_id == node_id) {
            if door.upstream != upstream {
                upstream.clone_into(&mut door.upstream);
            }
            return Ok(Assignment::Known(door.port));
        }
        let taken = u16::try_from(self.doors.len()).unwrap_or(u16::MAX);
        let port = (taken < self.max)
            .then(|| self.base.checked_add(taken))
            .flatten()
            .ok_or(BrokerError::Full {
                node_id,
                max: self.max,
            })?;
        self.doors.push(Door {
            node_id,
            port,
            upstream: upstream.to_owned(),
        });
        Ok(Assignment::New(port))
    }

    /// Forgets a door whose listener could not be opened, so a later
    /// attempt can try again.
    pub fn remove(&mut self, node_id: i32) {
        self.doors.retain(|d| d.node_id != node_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_order_nodes_are_learnt_and_stay_put() {
        let mut map = BrokerMap::new(9193, 2);
        assert_eq!(map.assign(7, "a:1").unwrap(), Assignment::New(9193));
        assert_eq!(map.assign(3, "b:1").unwrap(), Assignment::New(9194));
        assert_eq!(map.assign(7, "a:2").unwrap(), Assignment::Known(9193));
        assert_eq!(
            map.door(7).unwrap().upstream,
            "a:2",
            "address follows the cluster"
        );
        let err = map.assign(9, "c:1").unwrap_err();
        assert!(matches!(err, BrokerError::Full { node_id: 9, max: 2 }));
        assert!(err.to_string().contains("raise kafka.max_brokers"));
        map.remove(3);
        assert_eq!(map.assign(9, "c:1").unwrap(), Assignment::New(9194));
        assert_eq!(map.doors().len(), 2);
    }

    #[test]
    fn no_port_past_65535() {
        let mut map = BrokerMap::new(65535, 4);
        assert_eq!(map.assign(1, "a:1").unwrap().port(), 65535);
        assert!(map.assign(2, "a:2").is_err());
    }
}
