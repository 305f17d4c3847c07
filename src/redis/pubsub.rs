//! Pub/sub and commands that must reach both clusters (SCRIPT LOAD,
//! FUNCTION LOAD...). Channels are routed like keys: a channel belongs to
//! the first keyspace whose pattern matches its name.

use cutover_redis::{Request, encode};

use super::route::{Route, route};
use super::session::{Session, Waiter};
use super::side::Side;
use crate::migration::State;

impl Session {
    fn channel_route(&self, channel: &[u8]) -> Route {
        self.shared
            .keyspace_for(channel)
            .map_or(route(State::Source), |k| route(k.topic.state()))
    }

    /// SUBSCRIBE and friends pin the connection to one cluster; from then on
    /// its frames are relayed both ways as they come.
    pub(super) async fn subscribe(&mut self, request: Request) {
        let pattern = request.args[0].eq_ignore_ascii_case(b"psubscribe");
        let mut sides = request.args[1..].iter().map(|channel| {
            if pattern {
                self.shared
                    .common_route()
                    .map_or(Side::Source, |r| r.primary)
            } else {
                self.channel_route(channel).primary
            }
        });
        let side = sides.next().unwrap_or(Side::Source);
        if sides.any(|s| s != side) {
            return self.refuse("SUBSCRIBE names channels whose keyspaces live on different clusters; subscribe on separate connections");
        }
        if let Err(reason) = self.connect(side).await {
            return self.local(encode::error(&format!("ERR cutover: {reason}")));
        }
        self.pubsub = Some(side);
        self.send_unanswered(side, &request.raw);
    }

    /// In pub/sub mode every command goes to the pinned cluster unchanged.
    pub(super) fn pubsub_command(&mut self, side: Side, request: Request) {
        if request.args[0].eq_ignore_ascii_case(b"quit") {
            self.output.extend_from_slice(&encode::ok());
            self.closing = true;
            return;
        }
        if request.args[0].eq_ignore_ascii_case(b"reset") && request.args.len() == 1 {
            // RESET leaves pub/sub mode. Sent upstream it would also reset
            // the connection's authentication, so the subscribed
            // connection is dropped instead (which unsubscribes everything)
            // and the proxy resets the client's state itself.
            self.sides[side.index()] = None;
            self.shared.clients.set_upstream(self.client_id, side, None);
            self.pubsub = None;
            return self.reset();
        }
        self.send_unanswered(side, &request.raw);
    }

    /// PUBLISH reaches subscribers on both clusters while the channel's keyspace converges.
    pub(super) async fn publish(&mut self, request: Request) {
        let Some(channel) = request.args.get(1) else {
            return self.local(encode::error(
                "ERR wrong number of arguments for 'publish' command",
            ));
        };
        let channel_route = self.channel_route(channel);
        if let Some(other) = channel_route.converge_to
            && self.connect(other).await.is_ok()
        {
            self.send(other, &request.raw, Waiter::Discard);
        }
        self.forward(channel_route.primary, request.raw, None, false)
            .await;
    }

    /// Script and function management goes to every cluster in use, so
    /// EVALSHA/FCALL work wherever a keyspace routes; the source's reply
    /// (or the only side's) is the answer.
    pub(super) async fn broadcast(&mut self, request: Request) {
        let states: Vec<State> = self
            .shared
            .keyspaces
            .iter()
            .map(|(_, k)| k.topic.state())
            .collect();
        let uses_source = states.iter().any(|s| *s != State::Target);
        let uses_target = states.iter().any(|s| *s != State::Source);
        let answer = if uses_source {
            Side::Source
        } else {
            Side::Target
        };
        if uses_source && uses_target {
            if let Err(reason) = self.connect(Side::Target).await {
                return self.local(encode::error(&format!("ERR cutover: {reason}")));
            }
            if let Err(reason) = self.connect(Side::Source).await {
                return self.local(encode::error(&format!("ERR cutover: {reason}")));
            }
            self.send(Side::Target, &request.raw, Waiter::Discard);
        }
        self.forward(answer, request.raw, None, false).await;
    }
}
