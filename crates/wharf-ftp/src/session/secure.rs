//! FTPS on one control connection: AUTH TLS, PBSZ, PROT, CCC, the TLS policy that decides
//! what may happen in the clear, and the TLS handshake of each data connection.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wharf_core::EventKind;
use wharf_ftp_proto::{Command, Prot, Reply};

use super::State;
use crate::server::TlsMode;
use crate::stream::MaybeTls;

/// The service insists on TLS for logins and data.
fn tls_required(st: &State) -> bool {
    matches!(st.shared.config.tls, TlsMode::Required | TlsMode::Implicit)
}

/// A refusal when the TLS policy forbids `command` now, with its event.
pub(super) fn policy_refusal(st: &State, command: &Command) -> Option<Reply> {
    if !tls_required(st) {
        return None;
    }
    if !st.tls_on && matches!(command, Command::User(_) | Command::Pass(_)) {
        st.shared.events.emit(
            st.event(EventKind::TlsFailed)
                .failed("login in the clear refused: this service requires TLS"),
        );
        return Some(Reply::new(
            530,
            "this service requires TLS: send AUTH TLS before logging in",
        ));
    }
    if command.uses_data_connection() && !st.private_data {
        st.shared.events.emit(
            st.event(EventKind::TlsFailed)
                .failed("data connection in the clear refused: this service requires PROT P"),
        );
        return Some(Reply::new(
            521,
            "data connections must be protected on this service: send PBSZ 0 and PROT P",
        ));
    }
    None
}

/// AUTH TLS: answer 234, then the handshake. False ends the connection.
pub(super) async fn auth(st: &mut State, mechanism: &str) -> bool {
    if st.acceptor.is_none() {
        return st
            .send(Reply::new(502, "TLS is not enabled on this service"))
            .await;
    }
    if st.tls_on {
        return st
            .send(Reply::new(503, "the connection is already protected"))
            .await;
    }
    if st.session.is_some() {
        return st
            .send(Reply::new(503, "AUTH must come before login"))
            .await;
    }
    if !matches!(mechanism, "TLS" | "TLS-C" | "SSL" | "TLS-P") {
        return st
            .send(Reply::new(504, "AUTH TLS is the supported mechanism"))
            .await;
    }
    if !st
        .send(Reply::new(
            234,
            format!("AUTH {mechanism} OK; starting TLS"),
        ))
        .await
    {
        return false;
    }
    // Whatever followed AUTH in the clear could be a command injected ahead of the
    // handshake (CVE-2011-0411): it is dropped, never run as protected.
    st.input.clear();
    st.user = None;
    st.tls_on = true;
    let deadline = tokio::time::Instant::now() + st.shared.config.login_grace_time;
    if handshake_control(st, deadline).await.is_err() {
        return false;
    }
    // The old `AUTH SSL` meant protected data too.
    st.private_data = matches!(mechanism, "SSL" | "TLS-P");
    true
}

/// Turns the plain control connection into TLS, before `deadline`.
pub(super) async fn handshake_control(
    st: &mut State,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let (MaybeTls::Plain(tcp), Some(acceptor)) = (
        std::mem::replace(&mut st.control, MaybeTls::Gone),
        st.acceptor.as_ref().map(|a| a.control.clone()),
    ) else {
        return Err("TLS is not available on this connection".to_owned());
    };
    st.tls_on = true;
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            let version = conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            let cipher = conn
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or("unknown");
            st.shared.events.emit(
                st.event(EventKind::TlsEstablished)
                    .attr("channel", "control")
                    .attr("version", version)
                    .attr("cipher", cipher),
            );
            st.control = MaybeTls::Tls(Box::new(tls));
            Ok(())
        }
        Ok(Err(e)) => {
            let why = format!("TLS handshake on the control connection failed: {e}");
            st.shared
                .events
                .emit(st.event(EventKind::TlsFailed).failed(why.clone()));
            Err(why)
        }
        Err(_) => {
            let why = "TLS handshake on the control connection did not finish in time".to_owned();
            st.shared
                .events
                .emit(st.event(EventKind::TlsFailed).failed(why.clone()));
            Err(why)
        }
    }
}

pub(super) fn pbsz(st: &mut State) -> Reply {
    if !st.tls_on {
        return Reply::new(503, "send AUTH TLS first");
    }
    st.pbsz = true;
    Reply::new(200, "PBSZ=0")
}

pub(super) fn prot(st: &mut State, level: Prot) -> Reply {
    if !st.tls_on {
        return Reply::new(503, "send AUTH TLS first");
    }
    if !st.pbsz && st.shared.config.tls != TlsMode::Implicit {
        return Reply::new(503, "send PBSZ 0 first");
    }
    match level {
        Prot::Private => {
            st.private_data = true;
            Reply::new(200, "data connections will be protected")
        }
        Prot::Clear if tls_required(st) => {
            super::note_refusal(
                st,
                EventKind::TlsFailed,
                "PROT C refused: this service requires protected data connections",
            );
            Reply::new(
                534,
                "this service requires protected data connections (PROT P)",
            )
        }
        Prot::Clear => {
            st.private_data = false;
            Reply::new(200, "data connections will be in the clear")
        }
    }
}

pub(super) fn ccc(st: &State) -> Reply {
    if !st.tls_on {
        return Reply::new(503, "the control connection is not protected");
    }
    st.shared.events.emit(
        st.event(EventKind::CommandRefused)
            .failed("CCC refused: the control connection stays protected"),
    );
    Reply::new(534, "CCC refused: the control connection stays protected")
}

/// Whether the data connection resumed a session of this login; `Err` says why not.
async fn own_login(st: &State, data: &MaybeTls) -> Result<(), &'static str> {
    if !data.resumed() {
        if let Some(tls) = &st.acceptor {
            tls.data_refused();
        }
        return Err("its TLS handshake does not resume a session");
    }
    match &st.acceptor {
        // Go's TLS offers the ticket it received last, maybe on a connection that is still
        // logging in; that login is waited for as long as a data connection is (a connection
        // that does not log in is closed at its login grace time).
        Some(tls) => tls.resumed_own_login(st.shared.config.data_timeout).await,
        None => Err("TLS is not available"),
    }
}

/// The TLS handshake on a data connection under PROT P, with the session-reuse check.
pub(super) async fn protect_data(
    st: &State,
    stream: TcpStream,
    upload: bool,
) -> Result<MaybeTls, Reply> {
    if !st.private_data {
        return Ok(MaybeTls::Plain(stream));
    }
    let Some(tls) = st.acceptor.as_ref() else {
        return Err(Reply::new(425, "TLS is not available on this service"));
    };
    let acceptor = if upload {
        tls.upload.clone()
    } else {
        tls.download.clone()
    };
    tls.begin_data();
    let timeout = st.shared.config.data_timeout;
    let failed = |why: String, code: u16| {
        st.shared
            .events
            .emit(st.event(EventKind::TlsFailed).failed(why.clone()));
        Err(Reply::new(code, why))
    };
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let mut data = MaybeTls::Tls(Box::new(tls));
            if st.shared.config.require_tls_session_reuse
                && let Err(why) = own_login(st, &data).await
            {
                let _ = data.shutdown().await;
                return failed(
                    format!("data connection refused: {why} (session reuse is required)"),
                    522,
                );
            }
            Ok(data)
        }
        Ok(Err(e)) => failed(
            format!("TLS handshake on the data connection failed: {e}"),
            425,
        ),
        Err(_) => failed(
            "TLS handshake on the data connection did not finish in time".to_owned(),
            425,
        ),
    }
}
