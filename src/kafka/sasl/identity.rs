//! Whom the proxy logs in to each cluster as. By default (`proxy`) every
//! upstream connection uses the cluster's own `clusters[].auth`. With
//! `kafka.upstream_identity: client`, a logged-in client's connections log
//! in as that client's principal on each cluster, so broker ACLs and
//! quotas keep applying per user: the cluster's `auth.users` entry for the
//! client user, else (PLAIN logins only, where the proxy saw the password)
//! the client's own name and password with the cluster's mechanism.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::SaslLogin;
use super::scram::Mechanism;
use crate::config::{AuthConfig, ClusterConfig, UpstreamIdentity};
use crate::credentials::secret::Secret;
use crate::proxy::Handshake;

/// One cluster's logins.
#[derive(Debug)]
pub(crate) struct ClusterLogins {
    name: String,
    /// The cluster's own login (`clusters[].auth`), used by the control
    /// plane and, by default, by every session.
    pub(crate) proxy: Option<Arc<SaslLogin>>,
    mechanism: Option<Mechanism>,
    mapped: HashMap<String, Arc<SaslLogin>>,
}

impl ClusterLogins {
    /// The logins `cluster`'s `auth` describes (none without `auth`).
    ///
    /// # Errors
    /// A password file that cannot be read, or an unknown mechanism.
    pub(crate) fn of(cluster: &ClusterConfig) -> Result<ClusterLogins, String> {
        let mut logins = ClusterLogins {
            name: cluster.name.clone(),
            proxy: None,
            mechanism: None,
            mapped: HashMap::new(),
        };
        let Some(auth) = &cluster.auth else {
            return Ok(logins);
        };
        let mechanism = auth.sasl_mechanism().ok_or_else(|| {
            format!(
                "cluster \"{}\": auth.mechanism is missing or unknown",
                cluster.name
            )
        })?;
        logins.mechanism = Some(mechanism);
        if let Some(user) = &auth.username {
            let password = Secret::open(auth.password.as_ref(), auth.password_file.as_deref())
                .map_err(|e| e.to_string())?;
            logins.proxy = Some(Arc::new(SaslLogin::new(mechanism, user.clone(), password)));
        }
        logins.mapped = mapped(mechanism, auth)?;
        Ok(logins)
    }

    /// The login as a handshake for [`crate::proxy::Upstream`].
    #[must_use]
    pub(crate) fn handshake(&self) -> Option<Arc<dyn Handshake>> {
        self.proxy.clone().map(|l| l as Arc<dyn Handshake>)
    }

    fn for_client(&self, user: &str, password: Option<&str>) -> Result<Arc<SaslLogin>, String> {
        if let Some(login) = self.mapped.get(user) {
            return Ok(login.clone());
        }
        match (self.mechanism, password) {
            (Some(mechanism), Some(password)) => Ok(Arc::new(SaslLogin::new(
                mechanism,
                user.to_owned(),
                Secret::inline(password.to_owned()),
            ))),
            _ => Err(format!(
                "cluster \"{}\" has no credentials for user {user} (add clusters[].auth.users.{user})",
                self.name
            )),
        }
    }
}

fn mapped(
    mechanism: Mechanism,
    auth: &AuthConfig,
) -> Result<HashMap<String, Arc<SaslLogin>>, String> {
    auth.users
        .iter()
        .map(|(client, user)| {
            let password = Secret::open(user.password.as_ref(), user.password_file.as_deref())
                .map_err(|e| e.to_string())?;
            let name = user.username.clone().unwrap_or_else(|| client.clone());
            Ok((
                client.clone(),
                Arc::new(SaslLogin::new(mechanism, name, password)),
            ))
        })
        .collect()
}

/// Whom logged-in clients' sessions reach `[source, target]` as.
pub(crate) struct ClientIdentity {
    mode: UpstreamIdentity,
    clusters: [Arc<ClusterLogins>; 2],
}

impl ClientIdentity {
    /// For `mode` over the two clusters' logins.
    #[must_use]
    pub(crate) fn new(mode: UpstreamIdentity, clusters: [Arc<ClusterLogins>; 2]) -> Self {
        ClientIdentity { mode, clusters }
    }

    /// The per-cluster logins of client `user` (`password`: known from a
    /// PLAIN login); `None` when sessions use the clusters' own logins.
    ///
    /// # Errors
    /// When a cluster has no credentials for the user.
    pub(crate) fn resolve(
        &self,
        user: &str,
        password: Option<&str>,
    ) -> Result<Option<[Arc<SaslLogin>; 2]>, String> {
        if self.mode == UpstreamIdentity::Proxy {
            return Ok(None);
        }
        Ok(Some([
            self.clusters[0].for_client(user, password)?,
            self.clusters[1].for_client(user, password)?,
        ]))
    }
}
