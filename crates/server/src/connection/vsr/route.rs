//! The poll routing of the 0.9 SDK on a roster of more than one node (galgo-protocol's
//! `vsr::routing`; docs/architecture.md, "What 0.9 routing needs"). Every node serves polls
//! and offsets of every partition it holds, so a route names the node the client is on; the
//! SDK then opens a data connection to it, Registers there as a login of its own and attaches
//! it to the main connection's session, whose consumer-group memberships the data
//! connection's polls (104) and offset writes act for.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use galgo_protocol::{
    CommandCode, ErrorCode,
    vsr::{
        bodies,
        header::RequestHeader,
        routing::{self, Route, SessionRef},
    },
};

use super::{frame, state, status};
use crate::{
    authorization,
    context::{Context, Shard},
    handler::this_node,
    session::Session,
};

/// Answers 103, 123 and 14; `None` for any other code (the envelope runs it).
pub(super) async fn answer(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    header: &RequestHeader,
    body: &[u8],
) -> Option<Vec<Bytes>> {
    let outcome = match header.code {
        routing::GET_POLL_ROUTING => {
            route(shard, context, session, body, CommandCode::PollMessages)
        }
        routing::GET_CONSUMER_OFFSET_ROUTING => route(
            shard,
            context,
            session,
            body,
            CommandCode::GetConsumerOffset,
        ),
        routing::ATTACH_CONSUMER_SESSION => attach(shard, session, body).await,
        _ => return None,
    };
    Some(match outcome {
        Ok(body) => frame(shard, session, header, 0, vec![body]),
        Err(code) => {
            context.requests.record_error(code);
            status(shard, session, header, code)
        }
    })
}

/// GetPollRouting and GetConsumerOffsetRouting: the body must be the request it routes (a
/// poll, or an offset's target); the route is this connection's session and this node.
fn route(
    shard: &Shard,
    context: &Context,
    session: &mut Session,
    body: &[u8],
    routed: CommandCode,
) -> Result<Bytes, ErrorCode> {
    authenticate(shard, session)?;
    if let Err(error) = bodies::decode_request(routed, BytesMut::from(body)) {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, %error, "malformed 0.9 routing request");
        return Err(error);
    }
    let (client, number) = state(session).bound().ok_or(ErrorCode::Unauthenticated)?;
    let route = Route {
        session: SessionRef {
            client,
            session: number,
            metadata_watermark: shard.metadata.borrow().version(),
        },
        node: this_node(context),
    };
    let mut out = BytesMut::new();
    route.encode(&mut out);
    Ok(out.freeze())
}

/// AttachConsumerSession, on a data connection: the session it names must be live on this
/// node and logged in as the same user (41 otherwise); from now on this connection's polls
/// and offset writes act for that session's client.
async fn attach(shard: &Rc<Shard>, session: &mut Session, body: &[u8]) -> Result<Bytes, ErrorCode> {
    authenticate(shard, session)?;
    let parent = match SessionRef::decode(body) {
        Ok(parent) => parent,
        Err(error) => {
            crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, %error, "malformed 0.9 attach");
            return Err(error);
        }
    };
    let mut found = None;
    for target in shard.all_shards() {
        let (client, number) = (parent.client, parent.session);
        let on_shard = shard
            .call(target, move |shard| async move {
                shard
                    .state()
                    .clients
                    .borrow()
                    .find_vsr_session(client, number)
            })
            .await
            .map_err(|_| ErrorCode::TransientNotAccepted)?;
        if on_shard.is_some() {
            found = on_shard;
            break;
        }
    }
    match found {
        Some((client_id, user_id)) if user_id.is_some() && user_id == session.user_id => {
            state(session).attached = Some(client_id);
            Ok(Bytes::new())
        }
        _ => {
            crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, session = parent.session, "0.9 attach to a session that is not this user's live one");
            Err(ErrorCode::Unauthorized)
        }
    }
}

/// The routing commands need a logged-in user, as GetClusterMetadata does.
fn authenticate(shard: &Shard, session: &mut Session) -> Result<(), ErrorCode> {
    authorization::authenticate(shard, session, CommandCode::GetClusterMetadata.as_u32())
        .map_err(|error| error.code())
}
