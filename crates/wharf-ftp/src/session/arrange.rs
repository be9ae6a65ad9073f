//! Arranging the next data connection: PASV and EPSV open a listener, PORT and EPRT name
//! the client's address. Only one arrangement exists at a time (a new one drops the old
//! listener), so a PASV flood holds at most one port.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use wharf_core::EventKind;
use wharf_ftp_proto::{Reply, format_epsv, format_pasv, parse_eprt, parse_port};

use super::State;
use crate::data::{self, DataPlan};

pub(super) async fn pasv(st: &mut State) -> Reply {
    if st.epsv_all {
        return Reply::new(501, "EPSV ALL was given; use EPSV");
    }
    let IpAddr::V4(ip) = st.local_ip else {
        return Reply::new(522, "PASV is IPv4 only; use EPSV (2)");
    };
    st.plan = DataPlan::None;
    match data::passive_listener(IpAddr::V4(ip), &st.shared.config.passive_ports).await {
        Ok(l) => {
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            st.plan = DataPlan::Passive(l);
            let announced = st.shared.config.passive_address.unwrap_or(ip);
            Reply::new(227, format_pasv(SocketAddrV4::new(announced, port)))
        }
        Err(e) => refused_port(st, e),
    }
}

pub(super) async fn epsv(st: &mut State, all: bool) -> Reply {
    if all {
        st.epsv_all = true;
        return Reply::new(200, "EPSV ALL accepted");
    }
    st.plan = DataPlan::None;
    match data::passive_listener(st.local_ip, &st.shared.config.passive_ports).await {
        Ok(l) => {
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            st.plan = DataPlan::Passive(l);
            Reply::new(229, format_epsv(port))
        }
        Err(e) => refused_port(st, e),
    }
}

fn refused_port(st: &State, e: std::io::Error) -> Reply {
    st.shared.events.emit(
        st.event(EventKind::ProtocolError)
            .failed(format!("cannot open a passive port: {e}")),
    );
    Reply::new(425, format!("cannot open passive port: {e}"))
}

pub(super) fn port(st: &mut State, arg: &str) -> Reply {
    active(
        st,
        parse_port(arg)
            .map(SocketAddr::V4)
            .map_err(|e| e.to_string()),
    )
}

pub(super) fn eprt(st: &mut State, arg: &str) -> Reply {
    active(st, parse_eprt(arg).map_err(|e| e.to_string()))
}

fn active(st: &mut State, addr: Result<SocketAddr, String>) -> Reply {
    if !st.shared.config.active_mode {
        return Reply::new(
            502,
            "active mode is disabled on this service; use EPSV or PASV",
        );
    }
    if st.epsv_all {
        return Reply::new(501, "EPSV ALL was given; use EPSV");
    }
    let addr = match addr {
        // An unspecified address (lftp's `EPRT |2|::|port|` over IPv6) means the control
        // connection's own peer, as in vsftpd.
        Ok(a) if a.ip().is_unspecified() => {
            SocketAddr::new(st.remote.ip().to_canonical(), a.port())
        }
        Ok(a) => SocketAddr::new(a.ip().to_canonical(), a.port()),
        Err(e) => return Reply::new(501, e),
    };
    // Only the control connection's own peer, and no privileged port: no FTP bounce.
    let foreign = addr.ip() != st.remote.ip() && !st.shared.config.allow_foreign_data;
    if foreign || addr.port() < 1024 {
        st.shared
            .events
            .emit(st.event(EventKind::CommandRefused).failed(format!(
                "data connection to {addr} refused (not the client's address, or a privileged port)"
            )));
        return Reply::new(
            501,
            format!("data connection to {addr} refused: not your address or a privileged port"),
        );
    }
    st.plan = DataPlan::Active(addr);
    Reply::new(200, "active data connection arranged")
}
